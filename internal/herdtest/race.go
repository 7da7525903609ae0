//go:build race

package herdtest

// raceEnabled builds the herd binary under test with -race when the tests run with it.
const raceEnabled = true
