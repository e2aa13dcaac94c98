package jsmove

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream API messages Move exchanges, as nats-server 2.15 defines
// them in server/jetstream_api.go. Configurations and states pass through
// as the server wrote them.

// errCodeRestoreNameExists is JSStreamNameExistRestoreFailedErr, "stream
// name already in use, cannot restore", which nats.go does not name.
const errCodeRestoreNameExists jetstream.ErrorCode = 10130

type apiResponse struct {
	Error *jetstream.APIError `json:"error,omitempty"`
}

// snapshotRequest is JSApiStreamSnapshotRequest. jsck is left off: the
// server's v2 snapshots ignore it and verify each message's checksum as
// they read it.
type snapshotRequest struct {
	DeliverSubject string `json:"deliver_subject"`
	NoConsumers    bool   `json:"no_consumers,omitempty"`
	ChunkSize      int    `json:"chunk_size,omitempty"`
	WindowSize     int    `json:"window_size,omitempty"`
}

// snapshotResponse is JSApiStreamSnapshotResponse.
type snapshotResponse struct {
	apiResponse
	Config json.RawMessage `json:"config,omitempty"`
	State  json.RawMessage `json:"state,omitempty"`
}

// restoreRequest is JSApiStreamRestoreRequest.
type restoreRequest struct {
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

// restoreResponse is JSApiStreamRestoreResponse.
type restoreResponse struct {
	apiResponse
	DeliverSubject string `json:"deliver_subject"`
}

// streamInfoResponse is the part of JSApiStreamCreateResponse, the answer
// to the restore's last message, that Move reads.
type streamInfoResponse struct {
	apiResponse
	State jetstream.StreamState `json:"state"`
}

// consumerNamesResponse is the part of JSApiConsumerNamesResponse that
// Move reads.
type consumerNamesResponse struct {
	apiResponse
	Total int `json:"total"`
}

// request sends req (nil for an empty body) to a JetStream API subject
// and decodes the reply into resp.
func request(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	ctx, cancel := step(ctx)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return errNoJetStream
		}
		return err
	}
	return decode(m, resp)
}

var errNoJetStream = fmt.Errorf("no JetStream answered (%w); is JetStream enabled for this account?", nats.ErrNoResponders)

// decode reads a JetStream API reply; an empty one with a 503 status is
// the server's "no responders".
func decode(m *nats.Msg, resp any) error {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return errNoJetStream
		}
		return errors.New("empty reply from the JetStream API")
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("bad reply from the JetStream API: %w", err)
	}
	return nil
}
