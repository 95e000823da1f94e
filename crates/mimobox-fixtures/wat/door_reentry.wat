;; Tries to re-enter the door: its `host_alloc`, which the host calls to
;; place an answer, calls `host::call` again. Exits with the negated code
;; the nested call got (2 for "fault"), plus 10 times the outer call's.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "host" "call" (func $call (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "{\"v\":1,\"id\":1,\"op\":\"list\"}")
  (global $next (mut i32) (i32.const 65536))
  (global $nested (mut i32) (i32.const 1))
  (func (export "host_alloc") (param $n i32) (result i32) (local $at i32)
    (global.set $nested (call $call (i32.const 1024) (i32.const 26) (i32.const 700) (i32.const 704)))
    (local.set $at (global.get $next))
    (global.set $next (i32.add (local.get $at) (local.get $n)))
    (local.get $at))
  (func (export "_start") (local $rc i32)
    (local.set $rc (call $call (i32.const 1024) (i32.const 26) (i32.const 600) (i32.const 604)))
    (call $exit
      (i32.add (i32.mul (local.get $rc) (i32.const 10)) (i32.sub (i32.const 0) (global.get $nested))))))
