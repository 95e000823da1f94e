;; Creates symlinks in the mount at fd 3 whose targets leave it: "../.."
;; then "/etc". Exits with the first errno, or 0 if both were created.
(module
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "../..")
  (data (i32.const 16) "up")
  (data (i32.const 32) "/etc")
  (data (i32.const 48) "abs")
  (data (i32.const 64) "inside/file")
  (data (i32.const 80) "down")
  (func (export "_start") (local $e i32)
    ;; A link that stays beneath its directory is allowed.
    (local.set $e (call $symlink (i32.const 64) (i32.const 11) (i32.const 3) (i32.const 80) (i32.const 4)))
    (if (local.get $e) (then (call $exit (i32.add (i32.const 100) (local.get $e)))))
    (local.set $e (call $symlink (i32.const 0) (i32.const 5) (i32.const 3) (i32.const 16) (i32.const 2)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (call $exit (call $symlink (i32.const 32) (i32.const 4) (i32.const 3) (i32.const 48) (i32.const 3)))))
