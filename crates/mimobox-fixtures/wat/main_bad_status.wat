;; Exports `main` returning 256, which no exit status can carry.
(module
  (memory (export "memory") 1)
  (func (export "main") (result i32) (i32.const 256)))
