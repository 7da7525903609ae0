package server

// The herd command's exit statuses (cmd/herd), as the end-to-end tests expect them.
const (
	exitError   = 1 // bad configuration, a listener that cannot open
	exitAppBoot = 3 // no worker could load the app
)
