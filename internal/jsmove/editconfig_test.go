package jsmove

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEditConfigKeepsWhatEditDoesNotChange(t *testing.T) {
	// placement.preferred is a field of nats-server 2.15 that nats.go does
	// not know, and "future" stands for fields of servers to come.
	raw := json.RawMessage(`{"name":"S","subjects":["s.>"],"num_replicas":1,"future":{"x":1},` +
		`"placement":{"cluster":"c1","preferred":"n2"},"metadata":{"_nats.req.level":"0","owner":"ops"}}`)
	for _, tc := range []struct {
		name string
		edit func(*jetstream.StreamConfig)
		want string
	}{
		{
			name: "no edit",
			want: string(raw),
		},
		{
			name: "replicas",
			edit: func(c *jetstream.StreamConfig) { c.Replicas = 3 },
			want: `{"name":"S","subjects":["s.>"],"num_replicas":3,"future":{"x":1},` +
				`"placement":{"cluster":"c1","preferred":"n2"},"metadata":{"_nats.req.level":"0","owner":"ops"}}`,
		},
		{
			name: "placement dropped",
			edit: func(c *jetstream.StreamConfig) { c.Placement = nil },
			want: `{"name":"S","subjects":["s.>"],"num_replicas":1,"future":{"x":1},` +
				`"metadata":{"_nats.req.level":"0","owner":"ops"}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := editConfig(raw, "S", tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			var g, w map[string]any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
