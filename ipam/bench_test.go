package ipam

import (
	"context"
	"fmt"
	"testing"
)

// benchAllocateRelease allocates and releases one key per iteration in a
// network that already holds `held` leases.
func benchAllocateRelease(b *testing.B, held int) {
	s := newStore(b)
	ctx := context.Background()
	pools := []Pool{{Subnet: pfx("10.0.0.0/8"), Gateway: addr("10.0.0.1")}}
	for i := range held {
		mustAllocate(b, s, pools, key(fmt.Sprint("held", i)))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := key(fmt.Sprint("b", i))
		if _, err := s.Allocate(ctx, pools, k); err != nil {
			b.Fatal(err)
		}
		if err := s.Release(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAllocateRelease(b *testing.B) { benchAllocateRelease(b, 0) }

// BenchmarkAllocateRelease1000Leases should cost what BenchmarkAllocateRelease does.
func BenchmarkAllocateRelease1000Leases(b *testing.B) { benchAllocateRelease(b, 1000) }

// BenchmarkAllocate keeps allocating into a network that starts with 1000
// leases and grows by one per iteration.
func BenchmarkAllocate1000Leases(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	pools := []Pool{{Subnet: pfx("10.0.0.0/8"), Gateway: addr("10.0.0.1")}}
	for i := range 1000 {
		mustAllocate(b, s, pools, key(fmt.Sprint("held", i)))
	}
	for i := 0; b.Loop(); i++ {
		if _, err := s.Allocate(ctx, pools, key(fmt.Sprint("b", i))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := newStore(b)
	pools := []Pool{{Subnet: pfx("10.0.0.0/8")}}
	for i := range 1000 {
		mustAllocate(b, s, pools, key(fmt.Sprint("held", i)))
	}
	for b.Loop() {
		if _, err := s.Get(key("held500")); err != nil {
			b.Fatal(err)
		}
	}
}
