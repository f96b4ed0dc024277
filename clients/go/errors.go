package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call: the gRPC status code and the server's message, which names the
// offending field and value. status.Code(err) and status.FromError(err) work on it too.
//
// Codes the daemon uses: NotFound (unknown user, item, plugin, job, model or dataset),
// InvalidArgument (malformed request, bad job parameters), FailedPrecondition (untrained
// plugin, cancelling a job that has ended), ResourceExhausted (job queue full),
// AlreadyExists (plugin name taken), Unavailable (no daemon), DeadlineExceeded.
type Error struct {
	Code    codes.Code
	Message string
	// Method is the full RPC name, e.g. "/curec.v1.RecommendService/Recommend".
	Method string
}

func (e *Error) Error() string {
	if e.Method == "" {
		return fmt.Sprintf("%s: %s", StatusName(e.Code), e.Message)
	}
	return fmt.Sprintf("%s: %s (%s)", StatusName(e.Code), e.Message, e.Method)
}

var statusNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
	codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// StatusName returns the canonical gRPC name of a code, e.g. "NOT_FOUND", as other gRPC
// languages and the daemon's documentation spell it.
func StatusName(c codes.Code) string {
	if name, ok := statusNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

// GRPCStatus makes the error work with status.FromError and status.Code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &client.Error{Code: codes.NotFound}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Code returns the gRPC code of err: its own for an *Error or a gRPC status error, OK for
// nil, Unknown otherwise.
func Code(err error) codes.Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return status.Code(err)
}

func wrapError(err error, method string) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Code: s.Code(), Message: s.Message(), Method: method}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: codes.DeadlineExceeded, Message: err.Error(), Method: method}
	case errors.Is(err, context.Canceled):
		return &Error{Code: codes.Canceled, Message: err.Error(), Method: method}
	}
	return &Error{Code: codes.Unknown, Message: err.Error(), Method: method}
}
