package proxy

import (
	"bufio"

	"github.com/herd-server/herd/proxy/h1"
)

// A worker's answer is HTTP/1 and is read by h1, with the grammar a client's request is read
// with (proxy/h1/answer.go). The request path names it here as its own.

// ResponseHead is the status line and header of a worker's response.
type ResponseHead = h1.ResponseHead

// ReadResponseHead reads a worker's response head: see h1.ReadResponseHead.
func ReadResponseHead(r *bufio.Reader, method string, head *ResponseHead) error {
	return h1.ReadResponseHead(r, method, head)
}
