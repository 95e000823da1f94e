;; A session guest (the turn interface of docs/sessions.md) that keeps a
;; counter between turns. Each turn's code is a command, by its first byte:
;;   i  add one, print the counter    p  print the counter
;;   e  print "error" on stderr, status 1
;;   x  ask to exit (status 0x100)    t  trap
;;   l  loop forever                  m  grow memory until refused, trap
;;   f  write 64 KiB to stdout, 32 times
;;   g  grow memory by 16 MiB and fill it (status 1 if refused)
;;   r  read up to 1 KiB of `data.txt` in the first preopened directory
;;      (fd 3) into memory, and close it     P  print what `r` read
;;   s  make `shutdown` loop forever (to see whether closing calls it)
;;   h  print text that attacks a terminal: a title change, a screen
;;      clear, a clipboard write, invalid UTF-8 and a fake host line
;; `_initialize` must run exactly once, before the first turn.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $counter (mut i32) (i32.const 0))
  (global $initialized (mut i32) (i32.const 0))
  ;; Bump allocator for turn code, from 64 KiB on; reset each turn.
  (global $next (mut i32) (i32.const 65536))
  ;; Bytes `r` read, kept at 8 KiB.
  (global $read (mut i32) (i32.const 0))
  ;; Set by `s`: `shutdown` then never returns.
  (global $stall (mut i32) (i32.const 0))
  (data (i32.const 3072) "data.txt")
  (data (i32.const 3200) "\1b]0;pwned\07\1b[2J\1b]52;c;aGk=\07\ff\fe\0dmimobox: the session has ended (exited)\0a")

  (func (export "_initialize")
    (if (global.get $initialized) (then unreachable))
    (global.set $initialized (i32.const 1)))

  (func (export "host_alloc") (param $n i32) (result i32) (local $at i32) (local $end i32)
    (local.set $at (global.get $next))
    (local.set $end (i32.add (local.get $at) (local.get $n)))
    ;; Grow to fit; 0 when memory cannot grow.
    (block $fits
      (loop $grow
        (br_if $fits (i32.le_u (local.get $end) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (global.set $next (local.get $end))
    (local.get $at))

  ;; Writes bytes [ptr, ptr+len) to fd.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; Prints n in decimal and a newline.
  (func $print (param $n i32) (local $at i32)
    (local.set $at (i32.const 1023))
    (i32.store8 (local.get $at) (i32.const 10))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (call $write (i32.const 1) (local.get $at) (i32.sub (i32.const 1024) (local.get $at))))

  (func (export "turn") (param $ptr i32) (param $len i32) (result i32) (local $cmd i32) (local $i i32)
    (if (i32.eqz (global.get $initialized)) (then unreachable))
    (global.set $next (i32.const 65536))
    (if (i32.eqz (local.get $len)) (then (return (i32.const 0))))
    (local.set $cmd (i32.load8_u (local.get $ptr)))
    (if (i32.eq (local.get $cmd) (i32.const 105)) ;; i
      (then
        (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
        (call $print (global.get $counter))
        (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 112)) ;; p
      (then (call $print (global.get $counter)) (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 101)) ;; e
      (then
        (i32.store (i32.const 2048) (i32.const 0x6f727265)) ;; "erro"
        (i32.store16 (i32.const 2052) (i32.const 0x0a72))    ;; "r\n"
        (call $write (i32.const 2) (i32.const 2048) (i32.const 6))
        (return (i32.const 1))))
    (if (i32.eq (local.get $cmd) (i32.const 120)) ;; x
      (then (return (i32.const 0x100))))
    (if (i32.eq (local.get $cmd) (i32.const 116)) ;; t
      (then unreachable))
    (if (i32.eq (local.get $cmd) (i32.const 108)) ;; l
      (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $cmd) (i32.const 109)) ;; m
      (then
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))
    (if (i32.eq (local.get $cmd) (i32.const 102)) ;; f
      (then
        (memory.fill (i32.const 4096) (i32.const 120) (i32.const 65536))
        (loop $flood
          (call $write (i32.const 1) (i32.const 4096) (i32.const 65536))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $flood (i32.lt_u (local.get $i) (i32.const 32))))
        (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 103)) ;; g
      (then
        (local.set $i (i32.mul (memory.size) (i32.const 65536)))
        (if (i32.eq (memory.grow (i32.const 256)) (i32.const -1)) (then (return (i32.const 1))))
        (memory.fill (local.get $i) (i32.const 97) (i32.const 16777216))
        (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 114)) ;; r
      (then
        ;; path_open(3, follow, "data.txt", no oflags, read rights) -> fd at 16
        (if (call $path_open (i32.const 3) (i32.const 1) (i32.const 3072) (i32.const 8) (i32.const 0)
              (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16))
          (then (return (i32.const 1))))
        (i32.store (i32.const 0) (i32.const 8192))
        (i32.store (i32.const 4) (i32.const 1024))
        (drop (call $fd_read (i32.load (i32.const 16)) (i32.const 0) (i32.const 1) (i32.const 20)))
        (global.set $read (i32.load (i32.const 20)))
        (drop (call $fd_close (i32.load (i32.const 16))))
        (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 115)) ;; s
      (then (global.set $stall (i32.const 1)) (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 104)) ;; h
      (then (call $write (i32.const 1) (i32.const 3200) (i32.const 69)) (return (i32.const 0))))
    (if (i32.eq (local.get $cmd) (i32.const 80)) ;; P
      (then (call $write (i32.const 1) (i32.const 8192) (global.get $read)) (return (i32.const 0))))
    (i32.const 2))

  (func (export "shutdown") (result i32)
    (if (global.get $stall) (then (loop $forever (br $forever))))
    (i32.const 0)))
