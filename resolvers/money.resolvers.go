package resolvers

import (
	"context"
	"math"

	"mutuo/graph/model"
	"mutuo/lending"
	"mutuo/store"
)

func (r *loanResolver) Cet(ctx context.Context, obj *lending.Loan) (*float64, error) {
	ins, err := For(ctx).Installments.Load(ctx, obj.ID)()
	if err != nil {
		return nil, err
	}
	c := lending.LoanCET(obj, ins, r.now())
	if math.IsNaN(c) || math.IsInf(c, 0) {
		return nil, nil
	}
	return &c, nil
}

func (r *mutationResolver) CreateDeposit(ctx context.Context, amount lending.Money, idempotencyKey string) (*lending.Deposit, error) {
	return r.Store.CreateDeposit(ctx, lending.ViewerFrom(ctx), amount, idempotencyKey, store.PSPCharge(r.PSP, r.DepositExpiry, r.now))
}

func (r *mutationResolver) RequestWithdrawal(ctx context.Context, amount lending.Money, pixKey string, idempotencyKey string) (*lending.Withdrawal, error) {
	return r.Store.RequestWithdrawal(ctx, lending.ViewerFrom(ctx), amount, pixKey, idempotencyKey, r.PSP)
}

func (r *mutationResolver) RequestLoan(ctx context.Context, input model.RequestLoanInput, idempotencyKey string) (*lending.Loan, error) {
	return r.Store.RequestLoan(ctx, lending.ViewerFrom(ctx),
		store.RequestLoanInput{Amount: input.Amount, TermMonths: input.TermMonths, Purpose: input.Purpose}, idempotencyKey, r.now())
}

func (r *mutationResolver) Invest(ctx context.Context, loanID string, amount lending.Money, idempotencyKey string) (*lending.Investment, error) {
	id, err := lending.ParseIDOf(lending.KindLoan, loanID)
	if err != nil {
		return nil, err
	}
	return r.Store.Invest(ctx, lending.ViewerFrom(ctx), id, amount, idempotencyKey, r.now())
}

func (r *mutationResolver) RepayLoan(ctx context.Context, loanID string, amount lending.Money, idempotencyKey string) (*model.Repayment, error) {
	id, err := lending.ParseIDOf(lending.KindLoan, loanID)
	if err != nil {
		return nil, err
	}
	p, err := r.Store.RepayLoan(ctx, lending.ViewerFrom(ctx), id, amount, idempotencyKey, r.now())
	if err != nil {
		return nil, err
	}
	return &model.Repayment{Loan: p.Loan, Amount: p.Amount, Installments: p.Installments}, nil
}
