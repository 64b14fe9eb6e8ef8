-- +goose Up
-- The loan lifecycle's bookkeeping beyond 00001: the scheduler's "notify once"
-- markers on installments, and one row per repayment (what an idempotent
-- repayLoan replays).

-- When the INSTALLMENT_DUE notice went out (at most once per installment),
-- and when the scheduler first found the installment past due (LATE): an
-- installment paid afterwards stays on the borrower's record as late.
ALTER TABLE installments
    ADD COLUMN due_notified_at timestamptz,
    ADD COLUMN late_at         timestamptz;

CREATE TABLE loan_repayments (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id             bigint NOT NULL REFERENCES loans (id),
    user_id             bigint NOT NULL REFERENCES users (id),
    amount              bigint NOT NULL CHECK (amount > 0),
    fee                 bigint NOT NULL CHECK (fee >= 0 AND fee <= amount),
    -- the installments this payment settled or reduced, in order
    installment_numbers int[]  NOT NULL CHECK (cardinality(installment_numbers) >= 1),
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loan_repayments_loan ON loan_repayments (loan_id, id);

-- The scheduler's scans: funding loans by deadline exist (loans_status_deadline);
-- unpaid installments by due date exist (installments_due).

-- +goose Down
DROP TABLE loan_repayments;
ALTER TABLE installments DROP COLUMN due_notified_at, DROP COLUMN late_at;
