package onchange

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// Phase passes creations, deletions and generic events of T, and updates that change what
// phaseOf returns: a parent that sums up its children's outcomes is woken by their phase changes,
// not by every progress tick. An object of another type always passes.
func Phase[T client.Object](phaseOf func(T) string) predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		before, ok1 := e.ObjectOld.(T)
		after, ok2 := e.ObjectNew.(T)
		return !ok1 || !ok2 || phaseOf(before) != phaseOf(after)
	}}
}
