package resolvers_test

import (
	"testing"

	"mutuo/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
