;; The word loops of storage image evaluation, in WebAssembly SIMD: 128 bits per
;; instruction, and a population count instruction (i8x16.popcnt) where JavaScript needs
;; a dozen shifts and masks per 32-bit word. Assembled by `npm run wasm` into
;; bit-kernel-wasm.ts; a test fails when that file is stale.
;;
;; All offsets and lengths are in bytes, and every length is a multiple of 4096: a plane
;; chunk is one block of at least 4 KiB, and a caller with smaller chunks pads them with
;; zero bits, which no operation here turns into ones. Bit b of byte k is VBN 8k + b: the
;; little-endian layout of the Uint32Array words JavaScript sees, so a 64-bit lane shifted
;; left by one moves each bit onto the next VBN.
(module
  (import "env" "memory" (memory 1))

  ;; set bits counted by tally() so far
  (global $blocks (mut i64) (i64.const 0))
  ;; run starts (a set bit whose lower neighbour is clear) counted by tally() so far
  (global $extents (mut i64) (i64.const 0))

  ;; d[0..n) |= s[0..n)
  (func (export "or") (param $d i32) (param $s i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $d) (local.get $n)))
    (loop $next
      (v128.store offset=0 (local.get $d) (v128.or (v128.load offset=0 (local.get $d)) (v128.load offset=0 (local.get $s))))
      (v128.store offset=16 (local.get $d) (v128.or (v128.load offset=16 (local.get $d)) (v128.load offset=16 (local.get $s))))
      (v128.store offset=32 (local.get $d) (v128.or (v128.load offset=32 (local.get $d)) (v128.load offset=32 (local.get $s))))
      (v128.store offset=48 (local.get $d) (v128.or (v128.load offset=48 (local.get $d)) (v128.load offset=48 (local.get $s))))
      (local.set $d (i32.add (local.get $d) (i32.const 64)))
      (local.set $s (i32.add (local.get $s) (i32.const 64)))
      (br_if $next (i32.lt_u (local.get $d) (local.get $end)))))

  ;; d[0..n) &= s[0..n)
  (func (export "and") (param $d i32) (param $s i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $d) (local.get $n)))
    (loop $next
      (v128.store offset=0 (local.get $d) (v128.and (v128.load offset=0 (local.get $d)) (v128.load offset=0 (local.get $s))))
      (v128.store offset=16 (local.get $d) (v128.and (v128.load offset=16 (local.get $d)) (v128.load offset=16 (local.get $s))))
      (v128.store offset=32 (local.get $d) (v128.and (v128.load offset=32 (local.get $d)) (v128.load offset=32 (local.get $s))))
      (v128.store offset=48 (local.get $d) (v128.and (v128.load offset=48 (local.get $d)) (v128.load offset=48 (local.get $s))))
      (local.set $d (i32.add (local.get $d) (i32.const 64)))
      (local.set $s (i32.add (local.get $s) (i32.const 64)))
      (br_if $next (i32.lt_u (local.get $d) (local.get $end)))))

  ;; d[0..n) &= ~s[0..n)
  (func (export "andnot") (param $d i32) (param $s i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $d) (local.get $n)))
    (loop $next
      (v128.store offset=0 (local.get $d) (v128.andnot (v128.load offset=0 (local.get $d)) (v128.load offset=0 (local.get $s))))
      (v128.store offset=16 (local.get $d) (v128.andnot (v128.load offset=16 (local.get $d)) (v128.load offset=16 (local.get $s))))
      (v128.store offset=32 (local.get $d) (v128.andnot (v128.load offset=32 (local.get $d)) (v128.load offset=32 (local.get $s))))
      (v128.store offset=48 (local.get $d) (v128.andnot (v128.load offset=48 (local.get $d)) (v128.load offset=48 (local.get $s))))
      (local.set $d (i32.add (local.get $d) (i32.const 64)))
      (local.set $s (i32.add (local.get $s) (i32.const 64)))
      (br_if $next (i32.lt_u (local.get $d) (local.get $end)))))

  ;; 1 when any bit of p[0..n) is set, else 0
  (func (export "any") (param $p i32) (param $n i32) (result i32)
    (local $end i32) (local $acc v128)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (loop $next
      (local.set $acc
        (v128.or (local.get $acc)
          (v128.or
            (v128.or (v128.load offset=0 (local.get $p)) (v128.load offset=16 (local.get $p)))
            (v128.or (v128.load offset=32 (local.get $p)) (v128.load offset=48 (local.get $p))))))
      (local.set $p (i32.add (local.get $p) (i32.const 64)))
      (br_if $next (i32.lt_u (local.get $p) (local.get $end))))
    (v128.any_true (local.get $acc)))

  ;; Adds the set bits and run starts of p[0..n) to blocks and extents; $carry is the bit
  ;; just before p (1 when a run may continue into p, so that it counts once). Returns 1
  ;; when any bit is set. Byte counts from i8x16.popcnt are summed pairwise into 16-bit
  ;; lanes over 4 KiB (at most 256 vectors x 16 = 4096 per lane), then into 32-bit lanes.
  (func (export "tally") (param $p i32) (param $n i32) (param $carry i32) (result i32)
    (local $end i32) (local $stop i32)
    (local $v v128) (local $top v128) (local $prev v128) (local $starts v128)
    (local $b16 v128) (local $s16 v128) (local $b32 v128) (local $s32 v128) (local $any v128)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    ;; $prev holds bit 63 of each lane of the vector before, in bit 0: lane 1's is $carry
    (local.set $prev (i64x2.replace_lane 1 (v128.const i64x2 0 0) (i64.extend_i32_u (local.get $carry))))
    (loop $page
      (local.set $stop (i32.add (local.get $p) (i32.const 4096)))
      (local.set $b16 (v128.const i64x2 0 0))
      (local.set $s16 (v128.const i64x2 0 0))
      (loop $vector
        (local.set $v (v128.load (local.get $p)))
        (local.set $top (i64x2.shr_u (local.get $v) (i32.const 63)))
        ;; a bit starts a run when it is set and its lower neighbour is not: the lower
        ;; neighbours are v shifted left one bit across the whole 128-bit (and previous) vector
        (local.set $starts
          (v128.andnot (local.get $v)
            (v128.or (i64x2.shl (local.get $v) (i32.const 1))
              (i8x16.shuffle 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 (local.get $prev) (local.get $top)))))
        (local.set $prev (local.get $top))
        (local.set $b16 (i16x8.add (local.get $b16) (i16x8.extadd_pairwise_i8x16_u (i8x16.popcnt (local.get $v)))))
        (local.set $s16 (i16x8.add (local.get $s16) (i16x8.extadd_pairwise_i8x16_u (i8x16.popcnt (local.get $starts)))))
        (local.set $any (v128.or (local.get $any) (local.get $v)))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br_if $vector (i32.lt_u (local.get $p) (local.get $stop))))
      (local.set $b32 (i32x4.add (local.get $b32) (i32x4.extadd_pairwise_i16x8_u (local.get $b16))))
      (local.set $s32 (i32x4.add (local.get $s32) (i32x4.extadd_pairwise_i16x8_u (local.get $s16))))
      (br_if $page (i32.lt_u (local.get $p) (local.get $end))))
    (global.set $blocks (i64.add (global.get $blocks) (call $lanes (local.get $b32))))
    (global.set $extents (i64.add (global.get $extents) (call $lanes (local.get $s32))))
    (v128.any_true (local.get $any)))

  ;; the sum of the four unsigned 32-bit lanes
  (func $lanes (param $x v128) (result i64)
    (i64.add
      (i64.add (i64.extend_i32_u (i32x4.extract_lane 0 (local.get $x))) (i64.extend_i32_u (i32x4.extract_lane 1 (local.get $x))))
      (i64.add (i64.extend_i32_u (i32x4.extract_lane 2 (local.get $x))) (i64.extend_i32_u (i32x4.extract_lane 3 (local.get $x))))))

  ;; the counts as doubles (exact below 2^53): JavaScript gets numbers, not BigInts
  (func (export "blocks") (result f64) (f64.convert_i64_u (global.get $blocks)))
  (func (export "extents") (result f64) (f64.convert_i64_u (global.get $extents))))
