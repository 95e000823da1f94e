;; A valid module with three memories, within a sandbox's limits.
(module
  (memory (export "memory") 1)
  (memory $b 1)
  (memory $c 1)
  (func (export "_start")
    (i32.store $c (i32.const 0) (i32.const 7))))
