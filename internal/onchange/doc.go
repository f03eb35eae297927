// Package onchange provides what keeps controllers from waking themselves: a predicate that
// passes a watched object's update only when its phase changed, and a check that tells whether
// a status patch would change anything.
package onchange
