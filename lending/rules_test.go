package lending

import (
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"
)

func TestRuleConstants(t *testing.T) {
	if MinLoan.String() != "500.00" || MaxLoan.String() != "100000.00" || MinInvestment.String() != "25.00" {
		t.Errorf("money limits %v %v %v", MinLoan, MaxLoan, MinInvestment)
	}
	if FundingWindow != 336*time.Hour || DefaultDepositExpiry != time.Hour {
		t.Errorf("durations %v %v", FundingWindow, DefaultDepositExpiry)
	}
	if FeeBps(100_000, OriginationFeeBps) != 2_000 || FeeBps(100_000, ServicingFeeBps) != 1_000 {
		t.Error("fee rates")
	}
}

func TestValidateLoanRequest(t *testing.T) {
	tests := []struct {
		name    string
		amount  Money
		term    int
		purpose string
		want    string // trimmed purpose; "" means an error is expected
		inMsg   string // substring of the error message
	}{
		{"ok", 1_000_00, 12, "Reforma da casa", "Reforma da casa", ""},
		{"trimmed", MinLoan, MinTermMonths, "  \t carro novo \n", "carro novo", ""},
		{"bounds", MaxLoan, MaxTermMonths, "abc", "abc", ""},
		{"runes not bytes", MinLoan, 12, "ção", "ção", ""},
		{"max runes", MinLoan, 12, strings.Repeat("é", 500), strings.Repeat("é", 500), ""},
		{"newline inside ok", MinLoan, 12, "linha 1\nlinha 2", "linha 1\nlinha 2", ""},
		{"amount low", MinLoan - 1, 12, "abc", "", "amount must be between 500.00 and 100000.00"},
		{"amount high", MaxLoan + 1, 12, "abc", "", "amount"},
		{"amount zero", 0, 12, "abc", "", "amount"},
		{"term low", MinLoan, 2, "abc", "", "termMonths must be between 3 and 36"},
		{"term high", MinLoan, 37, "abc", "", "termMonths"},
		{"purpose short", MinLoan, 12, "ab", "", "purpose must be 3 to 500 characters, got 2"},
		{"purpose blank", MinLoan, 12, "     ", "", "got 0"},
		{"purpose short after trim", MinLoan, 12, "  ab  ", "", "got 2"},
		{"purpose long", MinLoan, 12, strings.Repeat("a", 501), "", "got 501"},
		{"purpose bad utf8", MinLoan, 12, "ab\xffcd", "", "UTF-8"},
		{"purpose control", MinLoan, 12, "ab\x00cd", "", "control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidateLoanRequest(tt.amount, tt.term, tt.purpose)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("= %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !IsCode(err, CodeBadUserInput) || !strings.Contains(err.Error(), tt.inMsg) {
				t.Fatalf("err = %v, want BAD_USER_INPUT containing %q", err, tt.inMsg)
			}
		})
	}
}

func TestValidateIdempotencyKey(t *testing.T) {
	good := []string{"a", "A-b_9", strings.Repeat("x", 64), "550e8400-e29b-41d4-a716-446655440000"}
	bad := []string{"", strings.Repeat("x", 65), "a b", "a.b", "ção", "a\x00", "key=1", "a/b"}
	for _, k := range good {
		if err := ValidateIdempotencyKey(k); err != nil {
			t.Errorf("%q: %v", k, err)
		}
	}
	for _, k := range bad {
		if err := ValidateIdempotencyKey(k); !IsCode(err, CodeBadUserInput) {
			t.Errorf("%q: err = %v", k, err)
		}
	}
}

func TestFeeBps(t *testing.T) {
	tests := []struct {
		amount Money
		bps    int
		want   Money
	}{
		{100_000, 200, 2_000},
		{0, 200, 0},
		{125, 200, 2}, // 2.5 -> 2 (even)
		{175, 200, 4}, // 3.5 -> 4 (even)
		{150, 100, 2}, // 1.5 -> 2
		{250, 100, 2}, // 2.5 -> 2
		{251, 100, 3}, // 2.51 -> 3
		{12_345, 0, 0},
		{12_345, 10_000, 12_345},
		{-250, 100, -2},
		{MaxMoneyInput, 10_000, MaxMoneyInput}, // no intermediate overflow
		{MaxMoneyInput, 200, MaxMoneyInput / 50},
	}
	for _, tt := range tests {
		if got := FeeBps(tt.amount, tt.bps); got != tt.want {
			t.Errorf("FeeBps(%v, %d) = %v, want %v", tt.amount, tt.bps, got, tt.want)
		}
	}
}

func TestAllocatePayment(t *testing.T) {
	sched := []Installment{
		{Number: 1, Principal: 1000, Interest: 100},
		{Number: 2, Principal: 1050, Interest: 50},
		{Number: 3, Principal: 1100, Interest: 0},
	}
	withPaid := func(paid ...Money) []Installment {
		s := append([]Installment(nil), sched...)
		for k, p := range paid {
			s[k].Paid = p
		}
		return s
	}
	type A = InstallmentAllocation
	tests := []struct {
		name     string
		in       []Installment
		amount   Money
		want     []A
		wantCode Code
	}{
		{"interest first", sched, 60, []A{{1, 60, 0}}, ""},
		{"exactly one installment", sched, 1100, []A{{1, 100, 1000}}, ""},
		{"spills into the next", sched, 1200, []A{{1, 100, 1000}, {2, 50, 50}}, ""},
		{"everything", sched, 3300, []A{{1, 100, 1000}, {2, 50, 1050}, {3, 0, 1100}}, ""},
		{"overpay", sched, 3301, nil, CodeBadUserInput},
		{"zero", sched, 0, nil, CodeBadUserInput},
		{"negative", sched, -1, nil, CodeBadUserInput},
		{"partly paid counts against interest", withPaid(40), 100, []A{{1, 60, 40}}, ""},
		{"partly paid into principal", withPaid(300), 900, []A{{1, 0, 800}, {2, 50, 50}}, ""},
		{"first fully paid is skipped", withPaid(1100), 10, []A{{2, 10, 0}}, ""},
		{"overpay counts what was paid", withPaid(1100, 1100), 1101, nil, CodeBadUserInput},
		{"all paid", withPaid(1100, 1100, 1100), 1, nil, CodeBadUserInput},
		{"unsorted input", []Installment{sched[2], sched[0], sched[1]}, 1150, []A{{1, 100, 1000}, {2, 50, 0}}, ""},
		{"nothing", nil, 1, nil, CodeBadUserInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := append([]Installment(nil), tt.in...)
			got, err := AllocatePayment(tt.in, tt.amount)
			if tt.wantCode != "" {
				if !IsCode(err, tt.wantCode) || got != nil {
					t.Fatalf("= %v, %v; want %s", got, err, tt.wantCode)
				}
			} else if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("= %v, %v; want %v", got, err, tt.want)
			}
			if !reflect.DeepEqual(before, tt.in) {
				t.Error("input modified")
			}
		})
	}
}

// Property: paying a schedule in random chunks allocates every centavo
// exactly once: per installment, interest and principal received equal the
// schedule's, and no allocation is ever negative.
func TestAllocatePaymentProperty(t *testing.T) {
	f := func(pRaw uint32, bpsRaw, nRaw uint16, seed int64) bool {
		p := Money(50_000 + int64(pRaw)%9_950_000)
		s := Schedule(p, int(bpsRaw)%10_001, 1+int(nRaw)%36, day0)
		var owed Money
		for _, in := range s {
			owed += in.Total()
		}
		gotInt, gotPr := map[int]Money{}, map[int]Money{}
		rng := rand.New(rand.NewSource(seed))
		for owed > 0 {
			amt := min(owed, 1+Money(rng.Int63n(int64(s[0].Total())*2)))
			allocs, err := AllocatePayment(s, amt)
			if err != nil {
				t.Log(err)
				return false
			}
			var sum Money
			for _, a := range allocs {
				if a.Interest < 0 || a.Principal < 0 || a.Interest+a.Principal == 0 {
					return false
				}
				// interest before principal: principal only once interest is done
				in := s[a.Number-1]
				if a.Principal > 0 && gotInt[a.Number]+a.Interest != in.Interest {
					return false
				}
				gotInt[a.Number] += a.Interest
				gotPr[a.Number] += a.Principal
				s[a.Number-1].Paid += a.Interest + a.Principal
				sum += a.Interest + a.Principal
			}
			if sum != amt {
				return false
			}
			owed -= amt
		}
		for _, in := range s {
			if gotInt[in.Number] != in.Interest || gotPr[in.Number] != in.Principal {
				return false
			}
		}
		_, err := AllocatePayment(s, 1)
		return IsCode(err, CodeBadUserInput)
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 300}); err != nil {
		t.Error(err)
	}
}
