// Package onchange provides what keeps controllers from waking themselves: a predicate that
// passes a watched object's update only when its phase changed, and a status patch that is sent
// only when it would change something.
package onchange
