;; Counts to 10,000 and exits 0: a bounded amount of work for fuel.
(module
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (loop $count
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $count (i32.lt_u (local.get $i) (i32.const 10000))))))
