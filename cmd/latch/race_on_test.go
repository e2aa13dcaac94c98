//go:build race

package main

// raceEnabled says the tests run with the race detector, which makes
// moving large files many times slower.
const raceEnabled = true
