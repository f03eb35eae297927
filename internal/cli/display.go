package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/ferry-backup/ferry/api/shared"
)

// display shows a followed backup or restore to a person: Update with each fresh reading of the
// operation, Finish once with the last one.
type display interface {
	Update(op operation)
	Finish(op operation)
}

// lineDisplay is the display without a terminal (a log, a CI job, a pipe): one line per change
// of the operation's phase or of a volume, at most one line per volume per second, then a
// summary line. A volume's last state is always printed, however soon it came.
type lineDisplay struct {
	w       io.Writer
	clock   clock.PassiveClock
	phase   string
	printed map[string]printedLine
}

type printedLine struct {
	change string // what the line said, without the figures that move with time alone
	at     time.Time
}

func newLineDisplay(w io.Writer, clk clock.PassiveClock) *lineDisplay {
	return &lineDisplay{w: w, clock: clk, phase: "-", printed: map[string]printedLine{}}
}

func (d *lineDisplay) Update(op operation) { d.show(op, false) }

func (d *lineDisplay) Finish(op operation) {
	d.show(op, true)
	fmt.Fprintln(d.w, summary(op, d.clock.Now()))
}

func (d *lineDisplay) show(op operation, last bool) {
	now := d.clock.Now()
	if op.Phase != d.phase {
		fmt.Fprintf(d.w, "%s %s: %s\n", op.Kind, op.Name, orDefault(op.Phase, "New"))
		d.phase = op.Phase
	}
	for _, v := range op.Volumes {
		key, change := v.Kind+"/"+v.Name, volumeChange(op, v)
		prev, seen := d.printed[key]
		if seen && (prev.change == change || (!last && now.Sub(prev.at) < time.Second)) {
			continue
		}
		fmt.Fprintf(d.w, "  %s (%s%s): %s\n", v.Target(), v.Path, prefixed(", ", v.Node), volumeText(op, v, now))
		d.printed[key] = printedLine{change: change, at: now}
	}
}

// volumeChange is what makes a new line worth printing: the state, bytes and files.
func volumeChange(op operation, v volume) string {
	p := v.Progress
	return fmt.Sprintf("%s %d/%d %d/%d %s", volumeState(op, v), p.BytesDone, p.TotalBytes, p.FilesDone, p.TotalFiles, v.Message)
}

// volumeText says where a volume stands, e.g. "uploading 12.0 MiB of 100.0 MiB (12%), 5.0 MiB/s, ETA 18s".
func volumeText(op operation, v volume, now time.Time) string {
	state, p := volumeState(op, v), v.Progress
	parts := []string{state}
	switch state {
	case "waiting":
		if v.Phase != "" {
			parts[0] += " (" + v.Phase + ")"
		}
		if v.Message != "" { // what it waits for: a slot, a snapshot, a pod
			parts[0] += ": " + v.Message
		}
		return parts[0]
	case "completed":
		parts = append(parts, byteSize(p.TotalBytes))
		if d := v.Duration(now); d > 0 {
			parts[len(parts)-1] += " in " + d.Round(time.Second).String()
		}
		if v.SnapshotID != "" {
			parts = append(parts, "snapshot "+v.SnapshotID)
		}
		return strings.Join(parts, " ")
	}
	scanning := p.Stage == shared.ProgressStageScanning
	if scanning {
		parts = append(parts, byteSize(p.BytesDone)+" so far, total not known yet")
	} else {
		parts = append(parts, fmt.Sprintf("%s of %s%s", byteSize(p.BytesDone), totalText(p, p.TotalBytes), percent(p.BytesDone, p.TotalBytes)))
	}
	text := strings.Join(parts, " ")
	if p.TotalFiles > 0 && !scanning {
		text += fmt.Sprintf(", %d/%d files", p.FilesDone, p.TotalFiles)
	}
	if w := workText(p); w != "" {
		text += " (" + w + ")"
	}
	if r := rate(v, now); r > 0 {
		text += fmt.Sprintf(", %s/s", byteSize(int64(r)))
		if left, ok := eta(p.BytesDone, p.TotalBytes, r); ok && readingBytes(p) {
			text += ", ETA " + left.String()
		}
	}
	if v.Message != "" {
		text += ": " + v.Message
	}
	return text
}

// estimated reports whether the progress' totals are an estimate.
func estimated(p shared.DataMoveOperationProgress) bool { return p.Estimated != nil && *p.Estimated }

// totalText is the total, "~" before it while it is an estimate.
func totalText(p shared.DataMoveOperationProgress, total int64) string {
	if estimated(p) {
		return "~" + byteSize(total)
	}
	return byteSize(total)
}

// workText says what a backup did with the bytes done, e.g. "8.0 MiB hashed, 2.0 MiB unchanged,
// 3.1 MiB uploaded"; empty when the node did not say.
func workText(p shared.DataMoveOperationProgress) string {
	var parts []string
	if p.BytesHashed > 0 {
		parts = append(parts, byteSize(p.BytesHashed)+" hashed")
	}
	if p.BytesCached > 0 {
		parts = append(parts, byteSize(p.BytesCached)+" unchanged")
	}
	if p.IncrementalBytes > 0 && (p.BytesHashed > 0 || p.BytesCached > 0) {
		parts = append(parts, byteSize(p.IncrementalBytes)+" uploaded")
	}
	return strings.Join(parts, ", ")
}

func percent(done, total int64) string {
	if total <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%d%%)", done*100/total)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
