package backupverification

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
	"github.com/ferry-backup/ferry/internal/serverjob"
)

// resultMarker starts the line that carries a verification Job's result.
const resultMarker = "ferry-verification-result "

// DefaultPercent is the share of files read back in full when a request does not say.
const DefaultPercent = 10

// ResultLine encodes the result as one line that fits a termination message: when the whole
// result does not, the error texts are cut, then dropped (the counts stay; the Job's log keeps
// every error line).
func ResultLine(res velerov1.BackupVerification) string {
	const budget = serverjob.MessageLimit - 96
	for _, keep := range []int{5, 3, 1, 0} {
		for _, width := range []int{300, 120} {
			line := serverjob.Line(resultMarker, compact(res, keep, width))
			if len(line) <= budget {
				return line
			}
		}
	}
	c := compact(res, 0, 120)
	total := len(c.Volumes)
	for len(serverjob.Line(resultMarker, c)) > budget && len(c.Volumes) > 0 {
		c.Volumes = c.Volumes[:len(c.Volumes)-1]
	}
	if len(c.Volumes) < total {
		c.Message = strings.TrimPrefix(fmt.Sprintf("%s; %d of %d volumes listed in the Job's log only", c.Message, total-len(c.Volumes), total), "; ")
	}
	return serverjob.Line(resultMarker, c)
}

// compact keeps the first keep error texts of each volume, each cut to width bytes.
func compact(res velerov1.BackupVerification, keep, width int) velerov1.BackupVerification {
	res.Message = cut(res.Message, 4*width)
	vols := make([]velerov1.VolumeVerification, len(res.Volumes))
	for i, v := range res.Volumes {
		v.Message = cut(v.Message, width)
		errs := v.FirstErrors[:min(keep, len(v.FirstErrors))]
		v.FirstErrors = make([]string, len(errs))
		for j, e := range errs {
			v.FirstErrors[j] = cut(e, width)
		}
		vols[i] = v
	}
	res.Volumes = vols
	return res
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// ParseResult finds the last result line in text; false when there is none.
func ParseResult(text string) (velerov1.BackupVerification, bool) {
	var r velerov1.BackupVerification
	ok := serverjob.Parse(text, resultMarker, &r)
	return r, ok
}

// Request is a parsed AnnotationVerifyRequested value, "<percent>@<time>".
type Request struct {
	Percent float64
	At      time.Time
}

// ParseRequest reads an AnnotationVerifyRequested value. A value without "@<time>" is a percent
// alone; an empty percent is the default.
func ParseRequest(value string) (Request, error) {
	p, at, _ := strings.Cut(value, "@")
	r := Request{Percent: DefaultPercent}
	if p = strings.TrimSpace(p); p != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(p, "%"), 64)
		if err != nil || v < 0 || v > 100 {
			return r, fmt.Errorf("annotation %s=%q: the percent must be a number from 0 to 100", velerov1.AnnotationVerifyRequested, value)
		}
		r.Percent = v
	}
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return r, fmt.Errorf("annotation %s=%q: the time after @ must be RFC 3339: %v", velerov1.AnnotationVerifyRequested, value, err)
		}
		r.At = t
	}
	return r, nil
}

// FormatRequest makes an AnnotationVerifyRequested value.
func FormatRequest(percent float64, at time.Time) string {
	return strconv.FormatFloat(percent, 'f', -1, 64) + "@" + at.UTC().Format(time.RFC3339)
}

// lastVerification reads an AnnotationLastVerification value; false when absent or unreadable.
func lastVerification(annotations map[string]string) (velerov1.BackupVerification, bool) {
	var v velerov1.BackupVerification
	s, ok := annotations[velerov1.AnnotationLastVerification]
	return v, ok && json.Unmarshal([]byte(s), &v) == nil
}
