;; Opens (creating) "f" in the mount at fd 3, then writes to it with two
;; billion buffers, all empty: a host that walked them would spin long past
;; any timeout. Exits with the write's errno (0 if it was accepted).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (func (export "_start") (local $e i32)
    ;; oflags CREAT (1); rights FD_WRITE (64)
    (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 16)))
    (if (local.get $e) (then (call $exit (i32.add (i32.const 100) (local.get $e)))))
    (call $exit (call $fd_write (i32.load (i32.const 16)) (i32.const 1024) (i32.const 0x7fffffff) (i32.const 32)))))
