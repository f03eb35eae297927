package cli

import (
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"k8s.io/utils/clock"

	"github.com/ferry-backup/ferry/api/shared"
	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// barDisplay is the display on a terminal: one bar per volume and one for the whole operation,
// with bytes done and total, rate, ETA and each volume's state, redrawn in place by mpb.
type barDisplay struct {
	w       io.Writer
	clock   clock.PassiveClock
	p       *mpb.Progress
	overall *bar
	volumes map[string]*bar
}

// bar is one row; its decorators read the latest text under mu, from mpb's goroutine.
type bar struct {
	b                       *mpb.Bar
	mu                      sync.Mutex
	label, state, count, rt string
	ended                   bool
}

func newBarDisplay(w io.Writer, clk clock.PassiveClock) *barDisplay {
	return &barDisplay{w: w, clock: clk, volumes: map[string]*bar{}}
}

// start starts drawing, at the first reading: nothing is drawn for an operation never read.
func (d *barDisplay) start() {
	if d.p == nil {
		d.p = mpb.New(mpb.WithOutput(d.w), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))
		d.overall = d.add("", mpb.BarPriority(math.MaxInt32))
	}
}

func (d *barDisplay) add(label string, opts ...mpb.BarOption) *bar {
	r := &bar{label: label}
	text := func(field *string) decor.DecorFunc {
		return func(decor.Statistics) string {
			r.mu.Lock()
			defer r.mu.Unlock()
			return *field
		}
	}
	opts = append(opts,
		mpb.PrependDecorators(decor.Any(text(&r.label), decor.WCSyncSpaceR), decor.Any(text(&r.state), decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(text(&r.count), decor.WCSyncSpace), decor.Any(text(&r.rt), decor.WCSyncSpace)))
	r.b = d.p.New(0, mpb.BarStyle(), opts...)
	return r
}

func (r *bar) set(label, state, count, rt string) {
	r.mu.Lock()
	r.label, r.state, r.count, r.rt = label, state, count, rt
	r.mu.Unlock()
}

// progress moves the bar to done of total; ok ends it, completed or not. A total of 0 is not
// known: the bar stays empty.
func (r *bar) progress(done, total int64, end, ok bool) {
	if r.ended {
		return
	}
	if total <= 0 && !end {
		r.b.SetTotal(0, false)
	} else {
		r.b.SetTotal(max(total, done), false)
	}
	r.b.SetCurrent(done)
	if end && ok {
		r.ended = true
		r.b.SetTotal(max(total, done), true)
	} else if end {
		r.stop()
	}
}

// stop ends a bar where it stands (a failed or canceled volume, or one never finished).
func (r *bar) stop() {
	if !r.ended {
		r.ended = true
		r.b.Abort(false)
	}
}

func (d *barDisplay) Update(op operation) {
	d.start()
	now := d.clock.Now()
	for _, v := range op.Volumes {
		key := v.Kind + "/" + v.Name
		r := d.volumes[key]
		if r == nil {
			r = d.add(v.Target())
			d.volumes[key] = r
		}
		p := v.Progress
		total, count, rt := p.TotalBytes, counts(p.BytesDone, p.TotalBytes), rateText(rate(v, now), p.BytesDone, p.TotalBytes)
		switch {
		case p.Stage == shared.ProgressStageScanning: // the total is not known yet: an empty bar
			total, count = 0, byteSize(p.BytesDone)+" / ?"
		case estimated(p):
			count = byteSize(p.BytesDone) + " / " + totalText(p, p.TotalBytes)
		}
		if !readingBytes(p) {
			rt = rateText(rate(v, now), 0, 0) // no ETA
		}
		if p.IncrementalBytes > 0 && !v.terminal() && (p.BytesHashed > 0 || p.BytesCached > 0) {
			count += ", " + byteSize(p.IncrementalBytes) + " uploaded"
		}
		r.set(v.Target(), volumeState(op, v), count, rt)
		r.progress(p.BytesDone, total, v.terminal(), v.Phase == string(velerov1.PodVolumePhaseCompleted))
	}
	t := sum(op.Volumes, now)
	d.overall.set(fmt.Sprintf("%s %s (%d volumes)", op.Kind, op.Name, len(op.Volumes)), orDefault(op.Phase, "New"),
		counts(t.Done, t.Total), rateText(t.Rate, t.Done, t.Total))
	d.overall.progress(t.Done, t.Total, false, false)
}

func (d *barDisplay) Finish(op operation) {
	d.Update(op)
	for _, r := range d.volumes {
		r.stop() // volumes that never ended
	}
	t := sum(op.Volumes, d.clock.Now())
	d.overall.progress(t.Done, t.Total, true, op.Phase == string(velerov1.BackupPhaseCompleted))
	d.p.Wait()
	for _, v := range op.Volumes {
		if v.Message != "" && v.Phase != string(velerov1.PodVolumePhaseCompleted) {
			fmt.Fprintf(d.w, "%s %s: %s\n", v.Target(), volumeState(op, v), v.Message)
		}
	}
	fmt.Fprintln(d.w, summary(op, d.clock.Now()))
}

func counts(done, total int64) string {
	return byteSize(done) + " / " + byteSize(total)
}

// rateText is "12.0 MiB/s ETA 18s", or empty while nothing moves.
func rateText(r float64, done, total int64) string {
	if r <= 0 {
		return ""
	}
	s := byteSize(int64(r)) + "/s"
	if left, ok := eta(done, total, r); ok {
		s += " ETA " + left.String()
	}
	return s
}
