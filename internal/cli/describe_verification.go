package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	velerov1 "github.com/ferry-backup/ferry/api/v1"
)

// describeVerification writes the backup's last verification, as ferry-server recorded it in
// the annotation ferry.io/last-verification: outcome, when, and per volume what was checked and
// what was found damaged; and a request not answered yet.
func describeVerification(w io.Writer, backup string, annotations map[string]string, now time.Time) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	requested := annotations[velerov1.AnnotationVerifyRequested]
	var res velerov1.BackupVerification
	data, ok := annotations[velerov1.AnnotationLastVerification]
	p("")
	if !ok || json.Unmarshal([]byte(data), &res) != nil {
		if requested != "" {
			p("Last verification:  <none>; one was requested (%s) and is not answered yet", requested)
		} else {
			p("Last verification:  <none> (`ferry backup verify %s` runs one)", backup)
		}
		return
	}
	outcome := "Verified, no damage found"
	switch {
	case !res.Completed:
		outcome = "Incomplete, not every volume could be verified"
	case res.Errors > 0:
		outcome = fmt.Sprintf("Damaged, %d damaged entries", res.Errors)
	}
	end := metav1.NewTime(res.End)
	p("Last verification:  %s", outcome)
	p("  Ended:            %s (%s ago), took %s", timestamp(&end), age(end, now), res.End.Sub(res.Start).Round(time.Second))
	p("  Files read back:  %g%%", res.Percent)
	if res.Job != "" {
		p("  Job:              %s", res.Job)
	}
	if requested != "" && requested != res.Request {
		p("  A newer verification was requested (%s) and is not answered yet", requested)
	}
	if len(res.Volumes) == 0 {
		if res.Message != "" {
			p("  Note: %s", res.Message)
		}
		return
	}
	printVerification(w, res, "  ")
}
