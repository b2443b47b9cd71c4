"""Bank: PIN login (locks after three wrong tries), accounts, transactions, transfers.

Every screen, the login screen included, is ``FLAG_SECURE`` (screencaps come
back black), like real banking apps.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import Page, View

MAX_ATTEMPTS = 3
_AMOUNT = re.compile(r"^\d+(\.\d{1,2})?$")


class Transaction(BaseModel):
    date: str
    description: str
    amount: float


class Account(BaseModel):
    id: str
    name: str
    number: str
    balance: float
    transactions: list[Transaction] = Field(default_factory=list)


class Transfer(BaseModel):
    id: int
    to: str
    amount: float
    from_account: str


def _txns(rows: list[tuple[str, str, float]]) -> list[Transaction]:
    return [Transaction(date=d, description=t, amount=a) for d, t, a in rows]


def _default_accounts() -> list[Account]:
    checking = _txns([
        ("Jun 14", "Green Grocer Market", -54.18), ("Jun 13", "Payroll deposit", 1850.00),
        ("Jun 12", "City Power & Light", -96.40), ("Jun 11", "Corner Coffee", -4.75),
        ("Jun 10", "Metro Transit card", -30.00), ("Jun 9", "Bookshop on Main", -22.99),
        ("Jun 8", "Pharmacy Plus", -13.20), ("Jun 7", "Rent - Oak Street Apartments", -1200.00),
        ("Jun 6", "Streaming service", -11.99), ("Jun 5", "ATM withdrawal", -60.00),
        ("Jun 4", "Pizza Palace", -27.50), ("Jun 3", "Refund - Outdoor Gear Co", 45.00),
        ("Jun 2", "Gas station", -38.62),
    ])
    savings = _txns([
        ("Jun 1", "Interest", 12.84), ("May 15", "Transfer from Checking", 500.00),
        ("May 1", "Interest", 12.31), ("Apr 15", "Transfer from Checking", 500.00),
    ])
    return [
        Account(id="checking", name="Checking", number="4821", balance=2418.35, transactions=checking),
        Account(id="savings", name="Savings", number="7390", balance=10250.00, transactions=savings),
    ]


def _default_payees() -> list[str]:
    return ["Mia Thompson", "Oak Street Apartments", "City Power & Light", "Noah Williams"]


class BankState(AppState):
    pin: str = "2468"
    logged_in: bool = False
    accounts: list[Account] = Field(default_factory=_default_accounts)
    payees: list[str] = Field(default_factory=_default_payees)
    transfers: list[Transfer] = Field(default_factory=list)
    failed_attempts: int = 0
    locked: bool = False


def money(amount: float) -> str:
    """``2418.35`` → ``$2,418.35``; negatives get a leading minus."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def parse_amount(text: str) -> float | None:
    """A typed amount (``$1,250.5``, ``40``) in dollars, or None when it is not a positive amount."""
    cleaned = text.strip().replace("$", "").replace(",", "").replace(" ", "")
    if not _AMOUNT.match(cleaned):
        return None
    value = round(float(cleaned), 2)
    return value if value > 0 else None


class Bank(App):
    """A mobile banking app."""

    package = "com.example.bank"
    label = "Bank"
    key = "bank"
    activity = ".ui.LoginActivity"
    State = BankState
    state: BankState

    def root(self) -> Route:
        if self.state.locked:
            return Route("locked")
        return Route("accounts") if self.state.logged_in else Route("login")

    def page(self, route: Route) -> Page:
        page = getattr(self, f"_page_{route.name}")(route)
        page.secure = True
        return page

    def pop(self) -> None:
        """Up/back; leaving the review screen keeps the transfer form filled in."""
        kept = dict(self.form.values) if self.route.name == "review" else {}
        super().pop()
        self.form.values.update(kept)

    # ------------------------------------------------------------ pages

    def _page_login(self, route: Route) -> Page:
        body = [
            ui.spacer(80),
            ui.text("Welcome back", size=60, bold=True, rid="welcome"),
            ui.text("Enter your PIN to sign in", muted=True, rid="prompt"),
            ui.field(self.form.get("pin"), self.form.setter("pin"), rid="pin", hint="PIN", password=True,
                     on_submit=self._login),
            ui.button("Log in", self._login, rid="login_button"),
        ]
        return Page(title="Bank", body=body, activity=".ui.LoginActivity")

    def _page_locked(self, route: Route) -> Page:
        body = [
            ui.spacer(80),
            ui.text("Locked", size=60, bold=True, rid="locked_title"),
            ui.text("Too many incorrect PIN attempts. The app is locked; call 1-800-555-0199 to unlock it.",
                    muted=True, rid="locked_message"),
        ]
        return Page(title="Bank", body=body, back=False, activity=".ui.LockedActivity")

    def _page_accounts(self, route: Route) -> Page:
        body: list[View] = [ui.header("Your accounts")]
        for acct in self.state.accounts:
            body.append(ui.item(acct.name, self._go("account", id=acct.id), subtitle=money(acct.balance),
                                rid="account", desc=f"{acct.name} account ending in {acct.number}"))
        body += [
            ui.spacer(),
            ui.button("Transfer money", self._go("transfer"), rid="transfer_button"),
            ui.button("Log out", self._logout, rid="logout_button"),
        ]
        return Page(title="Accounts", body=body, back=False, activity=".ui.AccountsActivity")

    def _page_account(self, route: Route) -> Page:
        acct = self._account(route.get("id"))
        if acct is None:
            return Page(title="Account", body=[ui.text("This account is no longer available.")])
        body: list[View] = [
            ui.text("Available balance", muted=True, rid="balance_label"),
            ui.text(money(acct.balance), size=72, bold=True, rid="balance"),
            ui.text(f"{acct.name} \u00b7\u00b7\u00b7\u00b7{acct.number}", muted=True, rid="account_number"),
            ui.button("Transfer", self._go("transfer", from_id=acct.id), rid="transfer_button"),
            ui.header("Recent transactions"),
        ]
        for t in acct.transactions:
            body.append(ui.item(t.description, subtitle=f"{t.date} \u00b7 {money(t.amount)}", rid="transaction"))
        return Page(title=acct.name, body=body, activity=".ui.AccountDetailActivity")

    def _page_transfer(self, route: Route) -> Page:
        from_id = self._from_id()
        typed = self.form.get("recipient")
        chosen = "" if typed.strip() else self.form.get("payee")
        body: list[View] = [
            ui.field(self.form.get("amount"), self.form.setter("amount"), rid="amount", hint="Amount ($0.00)",
                     on_submit=self._review),
            ui.header("To"),
            ui.field(typed, self.form.setter("recipient"), rid="recipient", hint="Recipient name"),
        ]
        for name in self.state.payees:
            body.append(ui.radio(name, name == chosen, self._pick_payee(name), rid="payee"))
        body.append(ui.header("From"))
        for acct in self.state.accounts:
            option = ui.radio(f"{acct.name} ({money(acct.balance)})", acct.id == from_id,
                              self._pick("from", acct.id), rid="from_account")
            option.desc = acct.name
            body.append(option)
        body.append(ui.button("Review", self._review, rid="review_button"))
        return Page(title="Transfer", body=body, activity=".ui.TransferActivity")

    def _page_review(self, route: Route) -> Page:
        acct = self._account(route.get("from_id"))
        amount, to = route.get("amount"), route.get("to")
        body = [
            ui.text(f"Send {money(amount)} to {to}?", size=52, bold=True, rid="confirm_message"),
            ui.item("From", subtitle=f"{acct.name} \u00b7\u00b7\u00b7\u00b7{acct.number}" if acct else "",
                    rid="review_from"),
            ui.item("To", subtitle=to, rid="review_to"),
            ui.item("Amount", subtitle=money(amount), rid="review_amount"),
            ui.spacer(),
            ui.button("Confirm transfer", self._confirm, rid="confirm_button"),
            ui.button("Cancel", self.pop, rid="cancel_button"),
        ]
        return Page(title="Review transfer", body=body, activity=".ui.TransferActivity")

    def _page_done(self, route: Route) -> Page:
        t = next((t for t in self.state.transfers if t.id == route.get("id")), None)
        body = [
            ui.text("Transfer sent", size=60, bold=True, rid="done_title"),
            ui.text(f"{money(t.amount)} sent to {t.to}" if t else "", rid="done_message"),
            ui.text(f"Reference number TR{t.id:06d}" if t else "", muted=True, rid="reference"),
            ui.button("Done", self.reset, rid="done_button"),
        ]
        return Page(title="Transfer", body=body, back=False, activity=".ui.TransferActivity")

    # ------------------------------------------------------------ handlers

    def _go(self, name: str, **args):
        def go() -> None:
            self.push(Route.to(name, **args))
            if name == "transfer" and args.get("from_id"):
                self.form.values["from"] = args["from_id"]

        return go

    def _account(self, account_id: str | None) -> Account | None:
        return next((a for a in self.state.accounts if a.id == account_id), None)

    def _from_id(self) -> str:
        chosen = self.form.get("from")
        if self._account(chosen) is not None:
            return chosen
        return self.state.accounts[0].id if self.state.accounts else ""

    def _pick(self, key: str, value: str):
        def pick() -> None:
            self.form.values[key] = value

        return pick

    def _pick_payee(self, name: str):
        def pick() -> None:
            self.form.values["payee"] = name
            self.form.values["recipient"] = ""

        return pick

    def _login(self) -> None:
        s = self.state
        pin = self.form.get("pin").strip()
        self.form.values["pin"] = ""
        if not (pin.isdigit() and 4 <= len(pin) <= 6):
            self.toast("Enter your 4 to 6 digit PIN")
            return
        if pin != s.pin:
            s.failed_attempts += 1
            if s.failed_attempts >= MAX_ATTEMPTS:
                s.locked = True
                self.reset()
                self.phone.focus_cleared()
            self.toast("Incorrect PIN")
            return
        s.logged_in, s.failed_attempts = True, 0
        self.reset()
        self.phone.focus_cleared()

    def _logout(self) -> None:
        self.state.logged_in = False
        self.reset()
        self.phone.focus_cleared()
        self.toast("Logged out")

    def _review(self) -> None:
        acct = self._account(self._from_id())
        typed = self.form.get("recipient").strip()
        to = typed or self.form.get("payee")
        amount = parse_amount(self.form.get("amount"))
        if acct is None:
            self.toast("Choose an account")
        elif not to:
            self.toast("Choose a recipient")
        elif amount is None:
            self.toast("Enter a valid amount")
        elif amount > acct.balance + 1e-9:
            self.toast("Insufficient funds")
        else:
            self.push(Route.to("review", from_id=acct.id, to=to, amount=amount), keep_form=True)

    def _confirm(self) -> None:
        acct = self._account(self.route.get("from_id"))
        amount, to = self.route.get("amount"), self.route.get("to")
        if acct is None or amount > acct.balance + 1e-9:
            self.toast("Insufficient funds")
            return
        acct.balance = round(acct.balance - amount, 2)
        acct.transactions.insert(0, Transaction(date="Today", description=f"Transfer to {to}", amount=-amount))
        transfer = Transfer(id=max((t.id for t in self.state.transfers), default=0) + 1, to=to, amount=amount,
                            from_account=acct.name)
        self.state.transfers.append(transfer)
        self.stack = [Route("accounts"), Route.to("done", id=transfer.id)]
        self.form.clear()
        self.phone.focus_cleared()
        self.toast("Transfer sent")

    # ------------------------------------------------------------ set-up hooks

    def setup_login(self) -> None:
        """Start the task already signed in (for tasks that are not about the PIN)."""
        self.state.logged_in, self.state.failed_attempts, self.state.locked = True, 0, False
        self.reset()
