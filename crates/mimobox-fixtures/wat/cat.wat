;; Copies stdin to stdout until end of input.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $errno i32)
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 65536))
    (block $eof
      (loop $copy
        (local.set $errno (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
        (if (local.get $errno) (then (call $proc_exit (local.get $errno))))
        (br_if $eof (i32.eqz (i32.load (i32.const 24))))
        (i32.store (i32.const 32) (i32.const 65536))
        (i32.store (i32.const 36) (i32.load (i32.const 24)))
        (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
        (br $copy)))))
