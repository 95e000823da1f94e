;; Has no _start; exports `main` returning 7, which becomes the exit status.
(module
  (memory (export "memory") 1)
  (func (export "main") (result i32) (i32.const 7)))
