module tracklock.local/gomixed

go 1.23.0

require (
	github.com/redis/rueidis v1.0.69
	golang.org/x/sys v0.31.0
)
