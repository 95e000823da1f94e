;; A tiny file tool: `fs OP DIRFD PATH`.
;;   OP `r`: copies the file PATH (relative to preopen DIRFD, one digit) to
;;           stdout.
;;   OP `w`: creates or truncates PATH and writes "written by guest\n".
;; Symlinks are followed. Exits 0 on success, with the WASI errno of the
;; failing call otherwise, and 99 on a usage error.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 256) "written by guest\n")
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done
      (loop $scan
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $scan)))
    (local.get $n))
  (func $check (param $errno i32)
    (if (local.get $errno) (then (call $proc_exit (local.get $errno)))))
  (func (export "_start") (local $op i32) (local $dir i32) (local $path i32) (local $fd i32)
    (call $check (call $args_sizes_get (i32.const 64) (i32.const 68)))
    (if (i32.lt_u (i32.load (i32.const 64)) (i32.const 4)) (then (call $proc_exit (i32.const 99))))
    (call $check (call $args_get (i32.const 1024) (i32.const 8192)))
    (local.set $op (i32.load8_u (i32.load (i32.const 1028))))
    (local.set $dir (i32.sub (i32.load8_u (i32.load (i32.const 1032))) (i32.const 48)))
    (local.set $path (i32.load (i32.const 1036)))
    (if (i32.eq (local.get $op) (i32.const 119))
      (then
        ;; oflags = CREAT | TRUNC, rights = FD_WRITE
        (call $check (call $path_open (local.get $dir) (i32.const 1) (local.get $path)
          (call $strlen (local.get $path)) (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 128)))
        (i32.store (i32.const 16) (i32.const 256))
        (i32.store (i32.const 20) (i32.const 17))
        (call $check (call $fd_write (i32.load (i32.const 128)) (i32.const 16) (i32.const 1) (i32.const 24)))
        (return)))
    ;; rights = FD_READ
    (call $check (call $path_open (local.get $dir) (i32.const 1) (local.get $path)
      (call $strlen (local.get $path)) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 128)))
    (local.set $fd (i32.load (i32.const 128)))
    (i32.store (i32.const 16) (i32.const 65536))
    (i32.store (i32.const 20) (i32.const 65536))
    (block $eof
      (loop $copy
        (call $check (call $fd_read (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))
        (br_if $eof (i32.eqz (i32.load (i32.const 24))))
        (i32.store (i32.const 32) (i32.const 65536))
        (i32.store (i32.const 36) (i32.load (i32.const 24)))
        (call $check (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 40)))
        (br $copy)))))
