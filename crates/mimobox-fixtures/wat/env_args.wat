;; Prints each argument, then each environment variable, one per line.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 8) "\n")
  ;; Writes the NUL-terminated string at $p and a newline.
  (func $puts (param $p i32) (local $n i32)
    (block $done
      (loop $scan
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $scan)))
    ;; Two writes: a WASI stream may take only the first buffer of a call.
    (i32.store (i32.const 16) (local.get $p))
    (i32.store (i32.const 20) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
    (i32.store (i32.const 16) (i32.const 8))
    (i32.store (i32.const 20) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32))))
  (func $print_all (param $count i32) (param $ptrs i32) (local $i i32)
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (call $puts (i32.load (i32.add (local.get $ptrs) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each))))
  (func (export "_start")
    ;; counts at 64 and 68, pointers from 1024, strings from 8192
    (drop (call $args_sizes_get (i32.const 64) (i32.const 68)))
    (drop (call $args_get (i32.const 1024) (i32.const 8192)))
    (call $print_all (i32.load (i32.const 64)) (i32.const 1024))
    (drop (call $environ_sizes_get (i32.const 64) (i32.const 68)))
    (drop (call $environ_get (i32.const 1024) (i32.const 8192)))
    (call $print_all (i32.load (i32.const 64)) (i32.const 1024))))
