;; Asks for 128 MiB of initial memory, so it cannot even be instantiated
;; under a smaller limit.
(module
  (memory (export "memory") 2048)
  (func (export "_start")))
