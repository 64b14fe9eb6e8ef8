package lending

import (
	"math/rand"
	"testing"
	"testing/quick"
	"time"
)

func TestCheckInvestment(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	open := Loan{Status: LoanFunding, Amount: 1000_00, FundedAmount: 900_00, FundingDeadline: now.Add(time.Hour)}
	tests := []struct {
		name   string
		mutate func(*Loan)
		amount Money
		code   Code // "" = ok
	}{
		{"ok", nil, 50_00, ""},
		{"exactly the rest", nil, 100_00, ""},
		{"exactly the minimum", nil, MinInvestment, ""},
		{"below minimum", nil, MinInvestment - 1, CodeBadUserInput},
		{"zero", nil, 0, CodeBadUserInput},
		{"more than remains", nil, 100_01, CodeBadUserInput},
		{"funded loan", func(l *Loan) { l.Status = LoanActive }, 50_00, CodeInvalidState},
		{"cancelled loan, bad amount: state first", func(l *Loan) { l.Status = LoanCancelled }, 1, CodeInvalidState},
		{"deadline reached", func(l *Loan) { l.FundingDeadline = now }, 50_00, CodeInvalidState},
		{"deadline passed", func(l *Loan) { l.FundingDeadline = now.Add(-time.Second) }, 50_00, CodeInvalidState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open
			if tt.mutate != nil {
				tt.mutate(&l)
			}
			err := CheckInvestment(&l, tt.amount, now)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !IsCode(err, tt.code) {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
		})
	}
}

func TestCheckRepayable(t *testing.T) {
	for _, st := range []LoanStatus{LoanFunding, LoanFunded, LoanActive, LoanRepaid, LoanDefaulted, LoanCancelled} {
		err := CheckRepayable(st)
		ok := st == LoanActive || st == LoanDefaulted
		if ok != (err == nil) || (!ok && !IsCode(err, CodeInvalidState)) {
			t.Errorf("CheckRepayable(%s) = %v", st, err)
		}
	}
}

func TestOriginationFee(t *testing.T) {
	if got := OriginationFee(1000_00); got != 20_00 {
		t.Fatalf("fee = %v, want 20.00", got)
	}
	if got := OriginationFee(500_25); got != 10_00 { // 1000.5 centavos, half-even -> 1000
		t.Fatalf("fee = %v, want 10.00", got)
	}
}

func TestSplitRepayment(t *testing.T) {
	invs := []Investment{{ID: 7, Amount: 300_00}, {ID: 3, Amount: 100_00}}
	tests := []struct {
		name                string
		interest, principal Money
		invs                []Investment
		fee, feeI, feeP     Money
		shares              []RepaymentShare
	}{
		// 100.00 paid: fee 1.00 from the 10.00 interest; 9.00 interest split 3:1, 90.00 principal 3:1.
		{"fee from interest", 10_00, 90_00, invs, 1_00, 1_00, 0,
			[]RepaymentShare{{7, 67_50, 6_75}, {3, 22_50, 2_25}}},
		// 100.00 of pure principal: the fee comes from principal.
		{"fee from principal", 0, 100_00, invs, 1_00, 0, 1_00,
			[]RepaymentShare{{7, 74_25, 0}, {3, 24_75, 0}}},
		// 0.50 interest cannot cover the 1.00 fee on 100.00: 0.50 from each.
		{"fee from both", 50, 99_50, invs, 1_00, 50, 50,
			[]RepaymentShare{{7, 74_25, 0}, {3, 24_75, 0}}},
		// 1 centavo of principal to two equal outstanding amounts: tie to the smaller id.
		{"tie to smaller id", 0, 1, []Investment{{ID: 9, Amount: 50_00}, {ID: 4, Amount: 50_00}}, 0, 0, 0,
			[]RepaymentShare{{9, 0, 0}, {4, 1, 0}}},
		// principal goes by what is still owed: 4 has had all of its back, interest still by amount.
		{"principal by outstanding", 2, 2, []Investment{{ID: 9, Amount: 50_00}, {ID: 4, Amount: 50_00, ReceivedPrincipal: 50_00}}, 0, 0, 0,
			[]RepaymentShare{{9, 2, 1}, {4, 0, 1}}},
		{"last principal closes every investment", 0, 3, []Investment{{ID: 1, Amount: 100, ReceivedPrincipal: 99}, {ID: 2, Amount: 100, ReceivedPrincipal: 98}}, 0, 0, 0,
			[]RepaymentShare{{1, 1, 0}, {2, 2, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := SplitRepayment(tt.interest, tt.principal, tt.invs)
			if err != nil {
				t.Fatal(err)
			}
			if sp.Fee != tt.fee || sp.FeeInterest != tt.feeI || sp.FeePrincipal != tt.feeP {
				t.Fatalf("fee = %v (%v interest, %v principal), want %v (%v, %v)", sp.Fee, sp.FeeInterest, sp.FeePrincipal, tt.fee, tt.feeI, tt.feeP)
			}
			if len(sp.Shares) != len(tt.shares) {
				t.Fatalf("shares = %+v", sp.Shares)
			}
			for k := range tt.shares {
				if sp.Shares[k] != tt.shares[k] {
					t.Fatalf("share %d = %+v, want %+v", k, sp.Shares[k], tt.shares[k])
				}
			}
		})
	}
}

func TestSplitRepaymentErrors(t *testing.T) {
	if _, err := SplitRepayment(1, 1, nil); err == nil {
		t.Error("no investments: no error")
	}
	if _, err := SplitRepayment(-1, 1, []Investment{{ID: 1, Amount: 10}}); err == nil {
		t.Error("negative interest: no error")
	}
	if _, err := SplitRepayment(0, 11, []Investment{{ID: 1, Amount: 10}}); err == nil {
		t.Error("principal beyond what is owed: no error")
	}
}

// Property: repaying a loan in arbitrary pieces conserves every centavo,
// never pays an investment more principal than it lent, and (when no fee was
// ever taken from principal) returns each investment exactly its amount.
func TestSplitRepaymentProperty(t *testing.T) {
	f := func(seed int64) bool {
		r := rand.New(rand.NewSource(seed))
		n := 1 + r.Intn(8)
		invs := make([]Investment, n)
		var loan Money
		for k := range invs {
			invs[k] = Investment{ID: int64(r.Intn(1000)), Amount: Money(25_00 + r.Int63n(5000_00))}
			loan += invs[k].Amount
		}
		sched := Schedule(loan, 1500+r.Intn(4000), 3+r.Intn(34), time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC))
		var owed Money
		for _, in := range sched {
			owed += in.Total()
		}
		var feeFromPrincipal Money
		for owed > 0 {
			pay := min(owed, Money(1+r.Int63n(int64(owed)+int64(owed)/3)))
			allocs, err := AllocatePayment(sched, pay)
			if err != nil {
				t.Log(err)
				return false
			}
			var in, pr Money
			for _, a := range allocs {
				in += a.Interest
				pr += a.Principal
				sched[a.Number-1].Paid += a.Interest + a.Principal
			}
			sp, err := SplitRepayment(in, pr, invs)
			if err != nil {
				t.Log(err)
				return false
			}
			sum := sp.Fee
			for k, sh := range sp.Shares {
				if sh.Principal < 0 || sh.Interest < 0 || sh.InvestmentID != invs[k].ID {
					return false
				}
				sum += sh.Total()
				invs[k].ReceivedPrincipal += sh.Principal
				invs[k].ReceivedInterest += sh.Interest
				if invs[k].ReceivedPrincipal > invs[k].Amount {
					t.Logf("investment %d received %v of %v", k, invs[k].ReceivedPrincipal, invs[k].Amount)
					return false
				}
			}
			if sum != pay || sp.FeeInterest+sp.FeePrincipal != sp.Fee {
				return false
			}
			feeFromPrincipal += sp.FeePrincipal
			owed -= pay
		}
		var got Money
		for _, inv := range invs {
			got += inv.ReceivedPrincipal
			if feeFromPrincipal == 0 && inv.ReceivedPrincipal != inv.Amount {
				t.Logf("investment received %v of %v", inv.ReceivedPrincipal, inv.Amount)
				return false
			}
		}
		return got == loan-feeFromPrincipal
	}
	if err := quick.Check(f, &quick.Config{MaxCount: 300, Rand: rand.New(rand.NewSource(3))}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckInvestmentAllowsAnUnderMinimumRemainder(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &Loan{Status: LoanFunding, Amount: 50000, FundedAmount: 48000, FundingDeadline: now.Add(time.Hour)}
	if err := CheckInvestment(l, 2000, now); err != nil {
		t.Fatalf("the exact 20.00 remainder must be accepted: %v", err)
	}
	for _, a := range []Money{1999, 1000, 0, -5} {
		if err := CheckInvestment(l, a, now); !IsCode(err, CodeBadUserInput) {
			t.Fatalf("%v below the minimum and not the remainder: %v", a, err)
		}
	}
}
