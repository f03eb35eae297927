package restic

import (
	"archive/tar"
	"strings"
)

// Listing is a snapshot's entries by path, which corrects what restic's tar archive loses:
// restic 0.14 and later write times in whole seconds, and FIFOs, devices and sockets as empty
// regular files.
type Listing struct {
	byPath map[string]Node
	// TotalBytes and TotalFiles are the size and number of the regular files.
	TotalBytes, TotalFiles int64
}

// NewListing indexes nodes.
func NewListing(nodes []Node) *Listing {
	l := &Listing{byPath: make(map[string]Node, len(nodes))}
	for _, n := range nodes {
		l.byPath[n.Path] = n
		if n.Type == "file" {
			l.TotalBytes += n.Size
			l.TotalFiles++
		}
	}
	return l
}

// Header corrects one header of the snapshot's archive: the listed modification time, to the
// nanosecond; a FIFO, device, socket or irregular file is left out (skip names it). An entry the
// listing lacks (a name that is not valid UTF-8 is listed with U+FFFD in it) keeps the archive's
// header.
func (l *Listing) Header(h *tar.Header) (skip string, err error) {
	n, ok := l.byPath[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")]
	if !ok {
		return "", nil
	}
	switch n.Type {
	case "file", "dir", "symlink":
		if !n.ModTime.IsZero() {
			h.ModTime = n.ModTime
		}
		return "", nil
	case "fifo":
		return "FIFO", nil
	case "dev":
		return "block device", nil
	case "chardev":
		return "character device", nil
	}
	return n.Type, nil
}
