-- +goose Up
-- Mutuo's data model. Money is bigint centavos everywhere; every amount that
-- must be positive says so in a CHECK, and foreign keys tie everything.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    password_hash text        NOT NULL,
    roles         text[]      NOT NULL CHECK (roles <@ ARRAY['INVESTOR','BORROWER','ADMIN'] AND cardinality(roles) >= 1),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE investors (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL UNIQUE REFERENCES users (id),
    display_name text   NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE borrowers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint NOT NULL UNIQUE REFERENCES users (id),
    display_name   text   NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    grade          text   NOT NULL CHECK (grade IN ('A','B','C','D','E')),
    credit_score   int    NOT NULL CHECK (credit_score BETWEEN 0 AND 1000),
    monthly_income bigint NOT NULL CHECK (monthly_income >= 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX borrowers_display_name_trgm ON borrowers USING gin (display_name gin_trgm_ops);
CREATE INDEX borrowers_name_order ON borrowers (display_name, id);

CREATE TABLE loans (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    borrower_id      bigint NOT NULL REFERENCES borrowers (id),
    amount           bigint NOT NULL CHECK (amount > 0),
    funded_amount    bigint NOT NULL DEFAULT 0 CHECK (funded_amount >= 0 AND funded_amount <= amount),
    term_months      int    NOT NULL CHECK (term_months BETWEEN 1 AND 360),
    -- annual nominal rate in basis points of a fraction: 2400 = 0.2400 = 24% a year
    annual_rate_bps  int    NOT NULL CHECK (annual_rate_bps BETWEEN 0 AND 100000),
    grade            text   NOT NULL CHECK (grade IN ('A','B','C','D','E')),
    purpose          text   NOT NULL CHECK (length(purpose) BETWEEN 1 AND 500),
    status           text   NOT NULL CHECK (status IN ('FUNDING','FUNDED','ACTIVE','REPAID','DEFAULTED','CANCELLED')),
    funding_deadline timestamptz NOT NULL,
    disbursed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    version          bigint NOT NULL DEFAULT 0
);
-- marketplace orderings, each with the id tie-breaker
CREATE INDEX loans_status_created   ON loans (status, created_at, id);
CREATE INDEX loans_status_rate      ON loans (status, annual_rate_bps, id);
CREATE INDEX loans_status_amount    ON loans (status, amount, id);
CREATE INDEX loans_status_deadline  ON loans (status, funding_deadline, id);
CREATE INDEX loans_created          ON loans (created_at, id);
CREATE INDEX loans_borrower         ON loans (borrower_id, id);
CREATE INDEX loans_funding_borrower ON loans (borrower_id) WHERE status = 'FUNDING';

-- Every holder of money is a wallet: users' wallets and the platform's own
-- accounts (Pix clearing mirrors money outside the platform and so runs
-- negative; one escrow per loan; platform fees).
CREATE TABLE wallets (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text   NOT NULL CHECK (kind IN ('USER','PIX_CLEARING','LOAN_ESCROW','PLATFORM_FEES')),
    user_id    bigint UNIQUE REFERENCES users (id),
    loan_id    bigint UNIQUE REFERENCES loans (id),
    currency   text   NOT NULL DEFAULT 'BRL' CHECK (currency = 'BRL'),
    balance    bigint NOT NULL DEFAULT 0,
    held       bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    version    bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'PIX_CLEARING' OR balance >= 0),
    CHECK (held <= balance OR kind = 'PIX_CLEARING'),
    CHECK ((kind = 'USER') = (user_id IS NOT NULL)),
    CHECK ((kind = 'LOAN_ESCROW') = (loan_id IS NOT NULL))
);
CREATE UNIQUE INDEX wallets_one_platform_account ON wallets (kind) WHERE kind IN ('PIX_CLEARING','PLATFORM_FEES');
INSERT INTO wallets (kind) VALUES ('PIX_CLEARING'), ('PLATFORM_FEES');

-- A transfer groups ledger entries whose amounts sum to zero.
CREATE TABLE transfers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text   NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id   bigint NOT NULL REFERENCES transfers (id),
    wallet_id     bigint NOT NULL REFERENCES wallets (id),
    kind          text   NOT NULL CHECK (kind IN ('DEPOSIT','WITHDRAWAL','INVESTMENT','DISBURSEMENT','REPAYMENT','FEE','REFUND')),
    amount        bigint NOT NULL CHECK (amount <> 0),
    balance_after bigint NOT NULL,
    description   text   NOT NULL,
    loan_id       bigint REFERENCES loans (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_wallet ON ledger_entries (wallet_id, id);
CREATE INDEX ledger_entries_transfer ON ledger_entries (transfer_id);
CREATE INDEX ledger_entries_loan ON ledger_entries (loan_id) WHERE loan_id IS NOT NULL;

-- +goose StatementBegin
-- Backstop: at commit, every transfer's entries sum to zero.
CREATE FUNCTION ledger_transfer_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s bigint;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO s FROM ledger_entries WHERE transfer_id = NEW.transfer_id;
    IF s <> 0 THEN
        RAISE EXCEPTION 'transfer % is unbalanced by %', NEW.transfer_id, s;
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transfer_balanced();

CREATE TABLE investments (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id            bigint NOT NULL REFERENCES loans (id),
    investor_id        bigint NOT NULL REFERENCES investors (id),
    amount             bigint NOT NULL CHECK (amount > 0),
    status             text   NOT NULL CHECK (status IN ('COMMITTED','ACTIVE','CLOSED','REFUNDED')),
    received_principal bigint NOT NULL DEFAULT 0 CHECK (received_principal >= 0 AND received_principal <= amount),
    received_interest  bigint NOT NULL DEFAULT 0 CHECK (received_interest >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX investments_loan ON investments (loan_id, id);
CREATE INDEX investments_investor ON investments (investor_id, id);
CREATE INDEX investments_loan_investor ON investments (loan_id, investor_id);

-- Holds: money reserved in a wallet for an investment until the loan is
-- disbursed (POSTED) or cancelled (VOIDED). A hold resolves at most once.
CREATE TABLE holds (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_id     bigint NOT NULL REFERENCES wallets (id),
    investment_id bigint UNIQUE REFERENCES investments (id),
    withdrawal_id bigint UNIQUE,
    amount        bigint NOT NULL CHECK (amount > 0),
    status        text   NOT NULL CHECK (status IN ('HELD','POSTED','VOIDED')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    CHECK ((status = 'HELD') = (resolved_at IS NULL))
);
CREATE INDEX holds_wallet_held ON holds (wallet_id) WHERE status = 'HELD';

CREATE TABLE installments (
    loan_id   bigint NOT NULL REFERENCES loans (id),
    number    int    NOT NULL CHECK (number >= 1),
    due_date  date   NOT NULL,
    principal bigint NOT NULL CHECK (principal >= 0),
    interest  bigint NOT NULL CHECK (interest >= 0),
    paid      bigint NOT NULL DEFAULT 0 CHECK (paid >= 0 AND paid <= principal + interest),
    status    text   NOT NULL CHECK (status IN ('PENDING','PAID','LATE')),
    paid_at   timestamptz,
    PRIMARY KEY (loan_id, number)
);
CREATE INDEX installments_due ON installments (due_date) WHERE status <> 'PAID';

CREATE TABLE deposits (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id),
    wallet_id     bigint NOT NULL REFERENCES wallets (id),
    amount        bigint NOT NULL CHECK (amount > 0),
    status        text   NOT NULL CHECK (status IN ('PENDING','COMPLETED','EXPIRED')),
    txid          text   NOT NULL UNIQUE CHECK (txid ~ '^[A-Za-z0-9]{26,35}$'),
    br_code       text   NOT NULL,
    expires_at    timestamptz NOT NULL,
    end_to_end_id text UNIQUE,
    completed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deposits_user ON deposits (user_id, id);

-- Every Pix payment the PSP told us about, credited or not, once per endToEndId.
CREATE TABLE pix_payments (
    end_to_end_id text PRIMARY KEY,
    txid          text,
    amount        bigint NOT NULL,
    paid_at       timestamptz,
    deposit_id    bigint REFERENCES deposits (id),
    outcome       text   NOT NULL CHECK (outcome IN ('CREDITED','UNKNOWN_TXID','WRONG_AMOUNT','EXPIRED','ALREADY_PAID')),
    payload       jsonb  NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE withdrawals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    wallet_id    bigint NOT NULL REFERENCES wallets (id),
    amount       bigint NOT NULL CHECK (amount > 0),
    pix_key      text   NOT NULL,
    pix_key_type text   NOT NULL,
    status       text   NOT NULL CHECK (status IN ('PENDING','COMPLETED','FAILED')),
    failure      text,
    psp_id       text,
    completed_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawals_user ON withdrawals (user_id, id);
ALTER TABLE holds ADD FOREIGN KEY (withdrawal_id) REFERENCES withdrawals (id);

CREATE TABLE chats (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    loan_id         bigint REFERENCES loans (id),
    -- the two participants in id order, so one chat exists per pair and loan
    user_low        bigint NOT NULL REFERENCES users (id),
    user_high       bigint NOT NULL REFERENCES users (id),
    last_message_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (user_low < user_high)
);
CREATE UNIQUE INDEX chats_pair_loan ON chats (user_low, user_high, coalesce(loan_id, 0));

CREATE TABLE chat_members (
    chat_id              bigint NOT NULL REFERENCES chats (id),
    user_id              bigint NOT NULL REFERENCES users (id),
    last_read_message_id bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members (user_id, chat_id);

CREATE TABLE messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id           bigint NOT NULL REFERENCES chats (id),
    sender_id         bigint NOT NULL REFERENCES users (id),
    body              text   NOT NULL CHECK (length(body) BETWEEN 1 AND 4000),
    client_message_id text   CHECK (length(client_message_id) BETWEEN 1 AND 64),
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_chat ON messages (chat_id, id);
CREATE UNIQUE INDEX messages_client_id ON messages (sender_id, client_message_id) WHERE client_message_id IS NOT NULL;

CREATE TABLE notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id),
    kind       text   NOT NULL CHECK (kind IN ('DEPOSIT_CONFIRMED','INVESTMENT_CONFIRMED','LOAN_FUNDED','LOAN_CANCELLED','LOAN_DISBURSED','REPAYMENT_RECEIVED','INSTALLMENT_DUE','INSTALLMENT_LATE','NEW_MESSAGE')),
    title      text   NOT NULL,
    body       text   NOT NULL,
    loan_id    bigint REFERENCES loans (id),
    read_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_user_unread ON notifications (user_id, id) WHERE read_at IS NULL;

-- Idempotency keys, scoped to the calling user and the operation.
CREATE TABLE idempotency_keys (
    user_id      bigint NOT NULL REFERENCES users (id),
    key          text   NOT NULL CHECK (key ~ '^[A-Za-z0-9_-]{1,64}$'),
    operation    text   NOT NULL,
    request_hash bytea  NOT NULL,
    result_id    bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE refresh_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    family_id   uuid   NOT NULL,
    token_hash  bytea  NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Events leave the database only through the outbox, after COMMIT.
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream       text   NOT NULL,
    topic        text   NOT NULL,
    payload      jsonb  NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox, refresh_tokens, idempotency_keys, notifications, messages, chat_members, chats,
    holds, withdrawals, pix_payments, deposits, installments, investments, ledger_entries, transfers,
    wallets, loans, borrowers, investors, users CASCADE;
DROP FUNCTION ledger_transfer_balanced();
