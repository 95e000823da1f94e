;; Sixteen tables of a million function references each: 128 MiB of host
;; memory that the memory limit must count.
(module
  (memory (export "memory") 1)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref) (table 1048576 funcref)
  (func (export "_start")))
