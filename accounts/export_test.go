package accounts

import "time"

// SetWatchTTL shortens the lifetime of the service users behind records
// watches, so that a test sees a watch move to a fresh one.
func (s *Service) SetWatchTTL(d time.Duration) { s.watchTTL = d }
