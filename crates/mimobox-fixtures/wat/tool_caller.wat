;; Sends its first argument as one request frame through `host::call`,
;; prints the answer, and exits 0 if the door answered 0, else 10 plus the
;; negated code (11 "no host", 12 "fault").
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "host" "call" (func $call (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  ;; Answers are allocated from 128 KiB on.
  (global $next (mut i32) (i32.const 131072))
  (func (export "host_alloc") (param $n i32) (result i32) (local $at i32)
    (local.set $at (global.get $next))
    (global.set $next (i32.add (local.get $at) (local.get $n)))
    (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
      (then (return (i32.const 0))))
    (local.get $at))
  (func (export "_start") (local $arg i32) (local $len i32) (local $rc i32)
    ;; argv pointers at 0, their strings at 1024.
    (drop (call $args_sizes_get (i32.const 512) (i32.const 516)))
    (drop (call $args_get (i32.const 0) (i32.const 1024)))
    (local.set $arg (i32.load (i32.const 4)))
    (block $end (loop $scan
      (br_if $end (i32.eqz (i32.load8_u (i32.add (local.get $arg) (local.get $len)))))
      (local.set $len (i32.add (local.get $len) (i32.const 1)))
      (br $scan)))
    ;; Out-slots at 600 and 604, pre-zeroed.
    (local.set $rc (call $call (local.get $arg) (local.get $len) (i32.const 600) (i32.const 604)))
    (if (local.get $rc) (then (call $exit (i32.sub (i32.const 10) (local.get $rc)))))
    (i32.store (i32.const 608) (i32.load (i32.const 600)))
    (i32.store (i32.const 612) (i32.load (i32.const 604)))
    (drop (call $fd_write (i32.const 1) (i32.const 608) (i32.const 1) (i32.const 616)))
    (call $exit (i32.const 0))))
