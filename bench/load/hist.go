package load

import (
	"math/bits"
	"time"
)

// Hist is an HDR-style log-linear latency histogram of nanosecond values: exact below 256 ns,
// then 128 sub-buckets per power of two (at most 0.8% relative error), up to 2^40 ns. It is not
// safe for concurrent use: each worker records into its own and they are merged afterwards.
type Hist struct {
	counts [histBuckets]int64
	n      int64
	min    int64
	max    int64
	sum    int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // 128
	histMaxExp  = 33               // values up to 2^(histMaxExp+histSubBits+1) ns
	histBuckets = 2*histSub + histMaxExp*histSub
)

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1)
	if e > histMaxExp {
		return histBuckets - 1
	}
	m := v >> e // in [128, 256)
	return 2*histSub + (e-1)*histSub + int(m-histSub)
}

// histValue is the highest value that maps to bucket i (HDR's "highest equivalent value").
func histValue(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	e := (i-2*histSub)/histSub + 1
	m := int64((i-2*histSub)%histSub + histSub)
	return (m+1)<<e - 1
}

// Record adds one value.
func (h *Hist) Record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds o's counts into h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of values recorded.
func (h *Hist) Count() int64 { return h.n }

// Max is the largest value recorded.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Mean is the arithmetic mean.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Quantile returns the value at q (0..1): the highest equivalent value of the bucket holding
// the ceil(q*n)-th value, capped at the recorded maximum.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var cum int64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			v := histValue(i)
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
