package crd_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/ferry-backup/ferry/internal/testenv"
)

// newNamespace creates a namespace for one test so tests do not see each other's objects.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-test-"}}
	if err := testenv.Get(t).Client.Create(testenv.Context(t), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// fromYAML builds an unstructured object from a YAML document in namespace ns.
func fromYAML(t *testing.T, ns, doc string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(strings.TrimSpace(doc)), &obj.Object); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	obj.SetNamespace(ns)
	return obj
}
