package shared

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a duration written as Go writes it ("90s", "1h30m"), in the JSON shape of
// metav1.Duration, that tolerates text Go cannot parse. Ferry's CRDs reject such text, but objects
// stored before they did, and every object under Velero's CRDs (which only say "type: string"),
// may hold e.g. "9999999999h". metav1.Duration fails to decode it, and with it every List and
// Watch of the kind: one bad object would stop a controller's cache from syncing. Duration
// decodes it instead as zero with the text kept in Invalid, writes the text back unchanged, and
// leaves it to the consumer to report Err.
//
// +kubebuilder:validation:Type=string
type Duration struct {
	time.Duration

	// Invalid is the text as written when it is not a duration (Duration is then 0); empty when
	// it is one.
	Invalid string `json:"-"`
}

// UnmarshalJSON reads a JSON string. It fails only on malformed JSON: text that is not a
// duration, and a JSON value that is not a string (which no CRD with "type: string" lets the
// API server store), are kept in Invalid. null and "" are the zero duration.
func (d *Duration) UnmarshalJSON(b []byte) error {
	*d = Duration{}
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		if !json.Valid(b) {
			return err
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			return err
		}
		d.Invalid = compact.String()
		return nil
	}
	d.set(s)
	return nil
}

// set parses s into d.
func (d *Duration) set(s string) {
	*d = Duration{}
	if s == "" {
		return
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Invalid = s
		return
	}
	d.Duration = v
}

// MarshalJSON writes the duration as metav1.Duration does ("1h0m0s"), or the invalid text as it
// was read, so that writing an object back never rewrites what its author wrote.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// ToUnstructured implements the apimachinery value.UnstructuredConverter interface, as
// metav1.Duration does.
func (d Duration) ToUnstructured() interface{} {
	return d.String()
}

// String is the duration as Go writes it, or the invalid text.
func (d Duration) String() string {
	if d.Invalid != "" {
		return d.Invalid
	}
	return d.Duration.String()
}

// Err reports a duration that could not be read, naming the field it came from (e.g.
// "spec.operationTimeout"); nil when it is one.
func (d Duration) Err(field string) error {
	if d.Invalid == "" {
		return nil
	}
	_, err := time.ParseDuration(d.Invalid)
	if err == nil {
		// Only a Duration built by hand with a valid Invalid text gets here.
		return fmt.Errorf("%s: %q is not read as a duration", field, d.Invalid)
	}
	return fmt.Errorf("%s: %q is not a duration (%w)", field, d.Invalid, err)
}

// OpenAPISchemaType is used by the kube-openapi generator, as for metav1.Duration.
func (Duration) OpenAPISchemaType() []string { return []string{"string"} }

// OpenAPISchemaFormat is used by the kube-openapi generator, as for metav1.Duration.
func (Duration) OpenAPISchemaFormat() string { return "" }
