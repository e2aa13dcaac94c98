package resolver

import (
	"fmt"
	"log/slog"
	"os"
)

// logAdapter passes nats-server's log lines to slog. Debug and trace are
// never turned on: at those levels the server prints protocol lines, which
// can carry JWTs.
type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l logAdapter) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l logAdapter) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l logAdapter) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l logAdapter) Tracef(format string, v ...any)  {}

// Fatalf logs and exits, as the server's own loggers do: the server calls
// it only when it cannot go on.
func (l logAdapter) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
	os.Exit(1)
}
