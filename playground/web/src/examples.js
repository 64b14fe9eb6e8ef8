// The tabs the playground opens with on a first visit (GraphiQL keeps the
// user's tabs in localStorage afterwards; Settings → "Clear storage" brings
// these back). One tab per part of the API, each with its named operations:
// ▶ offers a menu of them, Ctrl-Enter runs the one under the cursor. A tab's
// title is its first operation's name.
//
// Comment lines start at column 0 with '#': GraphiQL takes a tab's title from
// the first non-comment line that says query/mutation/subscription <Name>.

const json = (v) => JSON.stringify(v, null, 2);

const auth = `# Mutuo GraphQL playground
#
# 1. Press ▶ and pick SignIn (the demo investor), or put the cursor in it
#    and press Ctrl-Enter; copy "accessToken" from the response.
# 2. Paste it into the Headers pane (bottom left):
#      { "Authorization": "Bearer eyJhbGciOi..." }
#    The headers follow you to every tab, and subscriptions send the token in
#    the websocket's connection_init payload.
# 3. Explore the other tabs: Me; Marketplace (loans, loan, borrowers);
#    CreateDeposit (money: deposits, investments, loan requests, repayments,
#    withdrawals); Chats; Notifications; WalletUpdated (subscriptions).
#    Demo accounts (password mutuo-demo-123): investor@mutuo.dev and
#    borrower@mutuo.dev.

mutation SignIn {
  signIn(email: "investor@mutuo.dev", password: "mutuo-demo-123") {
    accessToken
    accessTokenExpiresAt
    refreshToken
    user {
      id
      name
      roles
    }
  }
}

mutation SignInBorrower {
  signIn(email: "borrower@mutuo.dev", password: "mutuo-demo-123") {
    accessToken
    refreshToken
    user {
      id
      name
      roles
    }
  }
}

# A new account (change the email in Variables).
mutation SignUp($signUp: SignUpInput!) {
  signUp(input: $signUp) {
    accessToken
    refreshToken
    user {
      id
      name
      roles
    }
  }
}

# Single use: each refresh returns a new refresh token.
mutation RefreshToken($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) {
    accessToken
    refreshToken
  }
}

# Revokes the token in the Authorization header and its session.
mutation SignOut {
  signOut
}
`;

const authVariables = json({
  signUp: {
    name: 'Ana Exemplo',
    email: 'ana@example.com',
    password: 'a-long-password',
    roles: ['INVESTOR'],
  },
  refreshToken: '<paste refreshToken from SignIn>',
});

const me = `# Needs the Authorization header (see the SignIn tab).

query Me {
  me {
    id
    name
    email
    roles
    createdAt
    wallet {
      id
      currency
      balance
      available
      held
      version
      entries(first: 10) {
        edges {
          node {
            kind
            amount
            balanceAfter
            description
            createdAt
            loan {
              id
              purpose
            }
          }
        }
        pageInfo {
          hasNextPage
          endCursor
        }
      }
    }
    investor {
      displayName
      portfolio {
        invested
        outstandingPrincipal
        receivedPrincipal
        receivedInterest
        activeInvestments
        netAnnualizedReturn
      }
      investments(first: 10) {
        totalCount
        edges {
          node {
            id
            amount
            status
            receivedPrincipal
            receivedInterest
            loan {
              id
              purpose
              status
              grade
            }
          }
        }
      }
    }
    borrower {
      displayName
      grade
      creditScore
      monthlyIncome
      loans(first: 10) {
        edges {
          node {
            id
            amount
            status
            annualRate
          }
        }
      }
    }
  }
}
`;

const marketplace = `# The marketplace is public: no token needed.

query Marketplace($filter: LoanFilter, $orderBy: LoanOrder, $first: Int, $after: String) {
  loans(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
    totalCount
    pageInfo {
      hasNextPage
      endCursor
    }
    edges {
      cursor
      node {
        id
        amount
        fundedAmount
        termMonths
        annualRate
        cet
        grade
        purpose
        status
        fundingDeadline
        investorCount
        borrower {
          id
          displayName
          grade
        }
        investments(first: 5) {
          totalCount
          edges {
            node {
              amount
              status
              createdAt
              investor {
                displayName
              }
            }
          }
        }
      }
    }
  }
}

# Set "loanId" in Variables to an id from Marketplace.
query Loan($loanId: ID!) {
  loan(id: $loanId) {
    id
    amount
    fundedAmount
    termMonths
    annualRate
    cet
    grade
    purpose
    status
    fundingDeadline
    borrower {
      displayName
      grade
    }
    installments {
      number
      dueDate
      principal
      interest
      total
      paid
      status
    }
  }
}

query Borrowers($search: String, $grades: [RiskGrade!]) {
  borrowers(search: $search, grade: $grades, first: 10) {
    totalCount
    edges {
      node {
        id
        displayName
        grade
        loans(first: 3, status: [FUNDING]) {
          edges {
            node {
              id
              amount
              annualRate
              termMonths
            }
          }
        }
      }
    }
  }
}
`;

const marketplaceVariables = json({
  filter: { status: ['FUNDING'], grade: ['A', 'B', 'C'], minAnnualRate: 0.1, maxTermMonths: 36 },
  orderBy: { field: 'ANNUAL_RATE', direction: 'DESC' },
  first: 5,
  after: null,
  loanId: '<paste a loan id from Marketplace>',
  search: 'a',
  grades: ['A', 'B', 'C', 'D', 'E'],
});

const money = `# Needs the Authorization header. Every operation takes an idempotencyKey:
# running it again with the same key returns the first result and moves no
# money twice, so change the key for a new operation.

# A Pix charge: pay it in the sandbox with "make pix-pay TXID=<txid>".
mutation CreateDeposit($amount: Money!, $idempotencyKey: String!) {
  createDeposit(amount: $amount, idempotencyKey: $idempotencyKey) {
    id
    amount
    status
    txid
    brCode
    expiresAt
  }
}

# Investors only: holds the amount while the loan is funding.
mutation Invest($loanId: ID!, $amount: Money!, $idempotencyKey: String!) {
  invest(loanId: $loanId, amount: $amount, idempotencyKey: $idempotencyKey) {
    id
    amount
    status
    loan {
      id
      fundedAmount
      investorCount
      status
    }
  }
}

# Borrowers only (sign in with SignInBorrower).
mutation RequestLoan($loan: RequestLoanInput!, $idempotencyKey: String!) {
  requestLoan(input: $loan, idempotencyKey: $idempotencyKey) {
    id
    amount
    termMonths
    annualRate
    cet
    grade
    status
    fundingDeadline
  }
}

# The borrower pays; investors receive their share.
mutation RepayLoan($loanId: ID!, $amount: Money!, $idempotencyKey: String!) {
  repayLoan(loanId: $loanId, amount: $amount, idempotencyKey: $idempotencyKey) {
    amount
    loan {
      id
      status
    }
    installments {
      number
      total
      paid
      status
    }
  }
}

mutation RequestWithdrawal($amount: Money!, $pixKey: String!, $idempotencyKey: String!) {
  requestWithdrawal(amount: $amount, pixKey: $pixKey, idempotencyKey: $idempotencyKey) {
    id
    amount
    pixKey
    status
  }
}
`;

const moneyVariables = json({
  amount: '100.00',
  idempotencyKey: 'playground-1',
  loanId: '<paste a loan id from Marketplace or Me>',
  loan: { amount: '5000.00', termMonths: 12, purpose: 'Equipamentos para a oficina' },
  pixKey: 'investor@mutuo.dev',
});

const chats = `# Needs the Authorization header.

query Chats {
  chats(first: 10) {
    edges {
      cursor
      node {
        id
        unreadCount
        participants {
          id
          name
        }
        loan {
          id
          purpose
        }
        lastMessage {
          body
          createdAt
          sender {
            name
          }
        }
        messages(last: 20) {
          edges {
            cursor
            node {
              id
              body
              createdAt
              sender {
                name
              }
            }
          }
        }
      }
    }
  }
}

# Opens (or returns) the chat with another user, e.g. a borrower's user id.
mutation StartChat($userId: ID!, $loanId: ID) {
  startChat(userId: $userId, loanId: $loanId) {
    id
    participants {
      name
    }
  }
}

mutation SendMessage($chatId: ID!, $body: String!, $clientMessageId: String) {
  sendMessage(chatId: $chatId, body: $body, clientMessageId: $clientMessageId) {
    id
    body
    clientMessageId
    createdAt
    sender {
      name
    }
  }
}

mutation MarkChatRead($chatId: ID!) {
  markChatRead(chatId: $chatId) {
    id
    unreadCount
  }
}
`;

const chatsVariables = json({
  chatId: '<paste a chat id from Chats>',
  body: 'Olá! Tenho uma pergunta sobre o empréstimo.',
  clientMessageId: 'playground-msg-1',
  userId: '<paste a user id>',
  loanId: null,
});

const notifications = `# Needs the Authorization header.

query Notifications($unreadOnly: Boolean) {
  notifications(first: 20, unreadOnly: $unreadOnly) {
    totalCount
    pageInfo {
      hasNextPage
      endCursor
    }
    edges {
      cursor
      node {
        id
        kind
        title
        body
        readAt
        createdAt
        loan {
          id
          purpose
        }
      }
    }
  }
}

# ids: null marks every notification read.
mutation MarkNotificationsRead($ids: [ID!]) {
  markNotificationsRead(ids: $ids)
}
`;

const notificationsVariables = json({ unreadOnly: true, ids: null });

const subscriptions = `# Live updates over the websocket at /graphql (graphql-transport-ws). The
# token in the Headers pane goes in the connection_init payload. Results
# stream into the response pane; press ■ to stop.

subscription WalletUpdated {
  walletUpdated {
    id
    balance
    available
    held
    version
  }
}

subscription NotificationAdded($after: String) {
  notificationAdded(after: $after) {
    id
    kind
    title
    body
    createdAt
  }
}

# Public: a marketplace loan, its state first, then every change.
subscription LoanUpdated($loanId: ID!) {
  loanUpdated(loanId: $loanId) {
    id
    status
    amount
    fundedAmount
    investorCount
  }
}

# chatId null: every chat of yours.
subscription MessageAdded($chatId: ID, $after: String) {
  messageAdded(chatId: $chatId, after: $after) {
    id
    body
    createdAt
    sender {
      name
    }
    chat {
      id
    }
  }
}
`;

const subscriptionsVariables = json({
  loanId: '<paste a loan id from Marketplace>',
  chatId: null,
  after: null,
});

export const tabs = [
  { query: auth, variables: authVariables },
  { query: me },
  { query: marketplace, variables: marketplaceVariables },
  { query: money, variables: moneyVariables },
  { query: chats, variables: chatsVariables },
  { query: notifications, variables: notificationsVariables },
  { query: subscriptions, variables: subscriptionsVariables },
];
