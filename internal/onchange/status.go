package onchange

import (
	"encoding/json"
	"fmt"
	"reflect"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StatusHolds reports whether obj's status already holds every one of fields, compared as JSON:
// a status patch of them would change nothing. A field absent from the status equals the field's
// zero value (the API types omit empty fields).
func StatusHolds(obj client.Object, fields map[string]any) (bool, error) {
	var current struct {
		Status map[string]any `json:"status"`
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, &current); err != nil {
		return false, err
	}
	want, err := asJSON(fields)
	if err != nil {
		return false, fmt.Errorf("status fields of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	for k, v := range want.(map[string]any) {
		if !reflect.DeepEqual(zeroToNil(current.Status[k]), zeroToNil(v)) {
			return false, nil
		}
	}
	return true, nil
}

// asJSON is v as encoding/json decodes it into an interface value.
func asJSON(v any) (any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(data, &out)
}

// zeroToNil maps the JSON values that omitempty leaves out to nil, inside objects too.
func zeroToNil(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil
		}
	case float64:
		if x == 0 {
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = zeroToNil(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e = zeroToNil(e); e != nil {
				out[k] = e
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return v
}
