package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"
)

// output is the -o flag of the commands that print objects: table (the default), wide (more
// columns), yaml, json, or jsonpath=TEMPLATE (kubectl's syntax).
type output struct {
	format string
}

func (p *output) addFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&p.format, "output", "o", "table", "output format: table, wide, yaml, json or jsonpath=TEMPLATE")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "wide", "yaml", "json", "jsonpath="}, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	})
}

// validate checks the format before anything is asked of the API server.
func (p *output) validate() error {
	switch {
	case p.format == "table", p.format == "wide", p.format == "yaml", p.format == "json":
		return nil
	case strings.HasPrefix(p.format, "jsonpath="):
		_, err := p.jsonPath()
		return err
	}
	return fmt.Errorf("-o %q: want table, wide, yaml, json or jsonpath=TEMPLATE", p.format)
}

func (p *output) jsonPath() (*jsonpath.JSONPath, error) {
	jp := jsonpath.New("output").AllowMissingKeys(true)
	if err := jp.Parse(strings.TrimPrefix(p.format, "jsonpath=")); err != nil {
		return nil, fmt.Errorf("-o %s: %w", p.format, err)
	}
	return jp, nil
}

// table is what a get command prints as a table: a header and one row per object.
type table struct {
	header []string
	rows   [][]string
}

// print writes obj (an object or a list) in the chosen format; rows builds the table (wide: with
// the extra columns).
func (p *output) print(w io.Writer, s *runtime.Scheme, obj runtime.Object, rows func(wide bool) table) error {
	switch p.format {
	case "table", "wide":
		return writeTable(w, rows(p.format == "wide"))
	}
	content, err := plain(s, obj)
	if err != nil {
		return err
	}
	switch p.format {
	case "yaml":
		data, err := yaml.Marshal(content)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	case "json":
		data, err := json.MarshalIndent(content, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	jp, err := p.jsonPath()
	if err != nil {
		return err
	}
	if err := jp.Execute(w, content); err != nil {
		return fmt.Errorf("-o %s: %w", p.format, err)
	}
	_, err = fmt.Fprintln(w)
	return err
}

// plain turns a typed object or list into JSON-shaped data with its apiVersion and kind set and
// without managed fields, as kubectl prints it.
func plain(s *runtime.Scheme, obj runtime.Object) (map[string]any, error) {
	obj = obj.DeepCopyObject()
	setKind(s, obj)
	if items, err := meta.ExtractList(obj); err == nil {
		for _, item := range items {
			setKind(s, item)
		}
		if err := meta.SetList(obj, items); err != nil {
			return nil, err
		}
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	return content, nil
}

func setKind(s *runtime.Scheme, obj runtime.Object) {
	if gvk, err := apiutil.GVKForObject(obj, s); err == nil {
		obj.GetObjectKind().SetGroupVersionKind(gvk)
	}
	if o, ok := obj.(client.Object); ok {
		o.SetManagedFields(nil)
	}
}

func writeTable(w io.Writer, t table) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// age is kubectl's AGE column: how long ago t was.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// orNone is s, or "<none>" when empty.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
