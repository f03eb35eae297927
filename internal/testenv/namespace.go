package testenv

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespace creates a namespace named prefix-<random> for one test and returns its name.
func Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := Get(t).Client.Create(Context(t), ns); err != nil {
		t.Fatalf("testenv: namespace: %v", err)
	}
	return ns.Name
}
