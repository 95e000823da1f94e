;; One poll_oneoff call with 490,000 (zeroed: clock) subscriptions. Exits
;; with the errno the call returned (0 if the host accepted it).
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 640)
  (func (export "_start")
    (call $exit
      (call $poll (i32.const 64) (i32.const 23592960) (i32.const 490000) (i32.const 0)))))
