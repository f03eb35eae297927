package uploader

import "testing"

// WithoutListxattrat makes backups list extended attributes as on kernels before Linux 6.13, for
// the rest of the test.
func WithoutListxattrat(t testing.TB) {
	was := noListxattrat.Swap(true)
	t.Cleanup(func() { noListxattrat.Store(was) })
}
