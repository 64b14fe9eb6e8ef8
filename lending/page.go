package lending

// Page size rules of the contract: `first` (or `last`) is 1..100, default 20.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// PageSize validates a client's first/last argument.
func PageSize(n *int) (int, error) {
	if n == nil {
		return DefaultPageSize, nil
	}
	if *n < 1 || *n > MaxPageSize {
		return 0, BadInput("page size must be between 1 and %d, got %d", MaxPageSize, *n)
	}
	return *n, nil
}
