package uploader

import "testing"

// WithoutListxattrat makes backups list extended attributes as on kernels before Linux 6.13, for
// the rest of the test.
func WithoutListxattrat(t testing.TB) {
	was := noListxattrat.Swap(true)
	t.Cleanup(func() { noListxattrat.Store(was) })
}

// WritebackWindow is how many bytes of a large file one restore writer lets the kernel buffer.
const WritebackWindow = writebackWindow

// OnFirstFileWritten tells f, for the rest of the test, how many directories a restore had listed
// when it wrote its first file.
func OnFirstFileWritten(t testing.TB, f func(dirsListed int64)) {
	firstFileWritten = f
	t.Cleanup(func() { firstFileWritten = nil })
}

// MaxLargeReaders is how many large files' readers a restore runs at once.
const MaxLargeReaders = maxLargeReaders

// OnLargeReaderStarted tells f, for the rest of the test, how many readers of large files a
// restore runs each time it starts one.
func OnLargeReaderStarted(t testing.TB, f func(taken int)) {
	largeReaderStarted = f
	t.Cleanup(func() { largeReaderStarted = nil })
}
