;; Asks for more memory forever and ignores every refusal.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $again
      (drop (memory.grow (i32.const 16)))
      (br $again))))
