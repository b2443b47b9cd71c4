"""Chrome-like browser with a handful of offline sites.

An address bar (Enter or "Go" loads what was typed), a start page with
bookmarks, and the sites ``news.example``, ``library.example``,
``weather.example`` and ``shop.example`` (products, cart, a secure payment page,
order confirmations). Any other address shows "This site can't be reached".
Each visited page is one entry of the back stack; back returns to the previous
page, and back on the first page leaves the app.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import Page, View

START = "chrome://newtab"
ORDER_BASE = 10420


class Bookmark(BaseModel):
    title: str
    url: str


class CartItem(BaseModel):
    product_id: int
    name: str
    price: float
    qty: int = 1


class Order(BaseModel):
    id: int
    items: list[CartItem]
    total: float
    card_last4: str
    name: str = ""


class Product(BaseModel):
    id: int
    name: str
    price: float
    description: str = ""


class Headline(BaseModel):
    id: int
    title: str
    body: str


class OpeningHours(BaseModel):
    day: str
    hours: str


class Library(BaseModel):
    name: str = "Riverside Public Library"
    address: str = "210 Elm Street, Springfield"
    phone: str = "(555) 014-2290"
    hours: list[OpeningHours] = Field(default_factory=lambda: [
        OpeningHours(day=d, hours=h) for d, h in [
            ("Monday", "9:00 AM - 8:00 PM"), ("Tuesday", "9:00 AM - 8:00 PM"),
            ("Wednesday", "9:00 AM - 8:00 PM"), ("Thursday", "9:00 AM - 8:00 PM"),
            ("Friday", "9:00 AM - 6:00 PM"), ("Saturday", "10:00 AM - 5:00 PM"), ("Sunday", "Closed"),
        ]
    ])


class Forecast(BaseModel):
    day: str
    condition: str
    high: int
    low: int


def _default_bookmarks() -> list[Bookmark]:
    rows = [("Daily News", "news.example"), ("Riverside Library", "library.example"),
            ("Weather", "weather.example"), ("Shop", "shop.example")]
    return [Bookmark(title=t, url=u) for t, u in rows]


def _default_products() -> list[Product]:
    rows = [
        ("Wireless earbuds", 49.99, "Bluetooth 5.3, 24-hour battery with the charging case."),
        ("Water bottle", 18.50, "Insulated stainless steel, 750 ml, keeps drinks cold for 24 hours."),
        ("Yoga mat", 24.00, "6 mm thick, non-slip, with a carrying strap."),
        ("Desk lamp", 32.75, "LED, three brightness levels, USB-C powered."),
        ("Phone charger", 15.99, "20 W USB-C fast charger."),
        ("Backpack", 59.00, "Water-resistant, 25 litres, padded laptop sleeve."),
        ("Coffee grinder", 39.95, "Burr grinder with 15 grind settings."),
        ("Notebook set", 9.99, "Three lined A5 notebooks."),
        ("Umbrella", 21.49, "Compact, wind-resistant, automatic open."),
        ("Bluetooth speaker", 44.00, "Waterproof, 12-hour battery."),
    ]
    return [Product(id=i, name=n, price=p, description=d) for i, (n, p, d) in enumerate(rows, start=1)]


def _default_headlines() -> list[Headline]:
    rows = [
        ("City council approves new riverside bike path",
         "The 4 km path will connect the old mill district with the harbor. Work starts in September."),
        ("Local bakery wins national sourdough prize",
         "Crust & Crumb on Maple Avenue took first place among 300 entries."),
        ("Heat wave expected to ease by the weekend",
         "Forecasters expect temperatures to drop by ten degrees after Thursday's storms."),
        ("Library extends weekend opening hours",
         "Riverside Public Library will stay open later on Saturdays starting next month."),
        ("High school robotics team heads to finals",
         "The Springfield Sparks qualified with a robot that sorts recycling."),
        ("Farmers market returns to Main Street",
         "Over forty stalls every Sunday morning through October."),
    ]
    return [Headline(id=i, title=t, body=b) for i, (t, b) in enumerate(rows, start=1)]


def _default_forecast() -> list[Forecast]:
    rows = [("Monday", "Sunny", 78, 61), ("Tuesday", "Partly cloudy", 75, 60), ("Wednesday", "Rain", 66, 57),
            ("Thursday", "Thunderstorms", 70, 59), ("Friday", "Cloudy", 72, 58), ("Saturday", "Sunny", 80, 62),
            ("Sunday", "Windy", 74, 60)]
    return [Forecast(day=d, condition=c, high=h, low=lo) for d, c, h, lo in rows]


class BrowserState(AppState):
    url: str = START
    history: list[str] = Field(default_factory=list)
    cart: list[CartItem] = Field(default_factory=list)
    orders: list[Order] = Field(default_factory=list)
    bookmarks: list[Bookmark] = Field(default_factory=_default_bookmarks)
    products: list[Product] = Field(default_factory=_default_products)
    headlines: list[Headline] = Field(default_factory=_default_headlines)
    library: Library = Field(default_factory=Library)
    forecast: list[Forecast] = Field(default_factory=_default_forecast)


def normalize(raw: str) -> str:
    """What the address bar makes of typed text: ``https://www.Shop.example/`` → ``shop.example``."""
    url = raw.strip().lower()
    if url.startswith("chrome://"):
        return url.rstrip("/")
    for prefix in ("https://", "http://", "www."):
        if url.startswith(prefix):
            url = url[len(prefix):]
    return url.rstrip("/")


def money(amount: float) -> str:
    return f"${amount:,.2f}"


def link(label: str, on_click: Callable[[], None], *, desc: str = "") -> View:
    """A tappable link inside a web page."""
    lines = len(ui.wrap(label, 44, ui.WIDTH - 2 * ui.PAD))
    return View(cls="android.view.View", text=label, desc=desc, on_click=on_click, size=44,
                height=lines * 60 + 70, style="section")


def para(value: str, **kw) -> View:
    """Static web text (web content has no resource ids)."""
    v = ui.text(value, **kw)
    v.cls = "android.view.View"
    return v


class Browser(App):
    """A Chrome-like browser."""

    package = "com.android.chrome"
    label = "Chrome"
    key = "browser"
    activity = "com.google.android.apps.chrome.Main"
    State = BrowserState
    state: BrowserState

    def root(self) -> Route:
        return Route.to("page", url=self.state.url)

    def pop(self) -> None:
        """Back: return to the previous page (on the first page, leave the app)."""
        super().pop()
        self.state.url = self.route.get("url", START)

    def page(self, route: Route) -> Page:
        url = route.get("url", START)
        host, _, path = url.partition("/")
        title, body, secure = self._site(host, path)
        bar = ui.row(self._bar_field(url), ui.button("Go", self._go_typed, rid="go_button", weight=1.0), height=150)
        return Page(title=title, body=[bar, *body], back=False, secure=secure,
                    activity="org.chromium.chrome.browser.ChromeTabbedActivity")

    def _bar_field(self, url: str) -> View:
        v = ui.field(self.form.get("url"), self.form.setter("url"), rid="url_bar",
                     hint=url if url != START else "Search or type web address", on_submit=self._go_typed)
        v.weight = 4.0
        return v

    # ------------------------------------------------------------ navigation

    def navigate(self, raw: str) -> None:
        """Load an address as a new page (the previous one stays on the back stack)."""
        url = normalize(raw) or START
        self.push(Route.to("page", url=url))
        self.state.url = url
        if url != START:
            self.state.history.append(url)

    def _go_typed(self) -> None:
        typed = self.form.get("url").strip()
        if typed:
            self.navigate(typed)

    def _to(self, url: str) -> Callable[[], None]:
        return lambda: self.navigate(url)

    # ------------------------------------------------------------ sites

    def _site(self, host: str, path: str) -> tuple[str, list[View], bool]:
        if host == "chrome:":
            return "New tab", self._start(), False
        handler = {"news.example": self._news, "library.example": self._library,
                   "weather.example": self._weather, "shop.example": self._shop}.get(host)
        if handler is None:
            return host or "Error", self._unreachable(host), False
        return handler(path)

    def _start(self) -> list[View]:
        body: list[View] = [ui.header("Bookmarks")]
        for b in self.state.bookmarks:
            body.append(ui.item(b.title, self._to(b.url), subtitle=b.url, rid="bookmark"))
        return body

    def _unreachable(self, host: str) -> list[View]:
        return [ui.spacer(), ui.text("This site can\u2019t be reached", size=56, bold=True, rid="error_title"),
                ui.text(f"{host}\u2019s server IP address could not be found.", muted=True, rid="error_detail"),
                ui.text("ERR_NAME_NOT_RESOLVED", muted=True, size=36, rid="error_code")]

    def _news(self, path: str) -> tuple[str, list[View], bool]:
        parts = path.split("/")
        if len(parts) == 2 and parts[0] == "article" and parts[1].isdigit():
            story = next((h for h in self.state.headlines if h.id == int(parts[1])), None)
            if story is not None:
                return "Daily News", [para(story.title, size=56, bold=True), para(story.body),
                                      link("Back to headlines", self._to("news.example"))], False
        if path:
            return "Daily News", [para("Page not found", size=56), link("Headlines", self._to("news.example"))], False
        body: list[View] = [para("Daily News", size=60, bold=True), para("Top stories", muted=True)]
        body += [link(h.title, self._to(f"news.example/article/{h.id}")) for h in self.state.headlines]
        return "Daily News", body, False

    def _library(self, path: str) -> tuple[str, list[View], bool]:
        lib = self.state.library
        if path == "events":
            return lib.name, [para("Events", size=56, bold=True), para("Tuesday 4 PM: Story time for kids"),
                              para("Thursday 6 PM: Book club"), para("Saturday 11 AM: Seed library swap"),
                              link("Back to the library home page", self._to("library.example"))], False
        body: list[View] = [para(lib.name, size=60, bold=True), para("Address", muted=True), para(lib.address),
                            para("Phone", muted=True), para(lib.phone), para("Opening hours", size=50, bold=True)]
        body += [para(f"{h.day}: {h.hours}") for h in lib.hours]
        body.append(link("Events", self._to("library.example/events")))
        return lib.name, body, False

    def _weather(self, path: str) -> tuple[str, list[View], bool]:
        body: list[View] = [para("Springfield weather", size=60, bold=True), para("7-day forecast", muted=True)]
        for f in self.state.forecast:
            body.append(para(f"{f.day}: {f.condition}, high {f.high}°F, low {f.low}°F"))
        return "Weather", body, False

    def _shop(self, path: str) -> tuple[str, list[View], bool]:
        parts = path.split("/")
        if path == "cart":
            return "Cart", self._cart(), False
        if path == "checkout":
            return "Checkout", self._checkout(), True
        if len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "product":
                product = next((p for p in self.state.products if p.id == int(parts[1])), None)
                if product is not None:
                    return product.name, self._product(product), False
            if parts[0] == "order":
                order = next((o for o in self.state.orders if o.id == int(parts[1])), None)
                if order is not None:
                    return "Order placed", self._order(order), False
        if path:
            return "Shop", [para("Page not found", size=56), link("Shop home", self._to("shop.example"))], False
        count = sum(i.qty for i in self.state.cart)
        body: list[View] = [para("Shop", size=60, bold=True), link(f"Cart ({count})", self._to("shop.example/cart"))]
        for p in self.state.products:
            body.append(ui.item(p.name, self._to(f"shop.example/product/{p.id}"), subtitle=money(p.price)))
        return "Shop", body, False

    def _product(self, p: Product) -> list[View]:
        return [para(p.name, size=60, bold=True), para(money(p.price), size=52), para(p.description, muted=True),
                ui.button("Add to cart", lambda: self._add_to_cart(p.id)),
                link("View cart", self._to("shop.example/cart")),
                link("Continue shopping", self._to("shop.example"))]

    def _cart(self) -> list[View]:
        cart = self.state.cart
        if not cart:
            return [para("Your cart is empty", size=52), link("Continue shopping", self._to("shop.example"))]
        body: list[View] = [para("Your cart", size=60, bold=True)]
        for item in cart:
            body.append(ui.row(
                ui.item(item.name, subtitle=f"Qty {item.qty} \u00b7 {money(item.price * item.qty)}"),
                ui.button("Remove", self._remove(item.product_id), weight=0.45, desc=f"Remove {item.name}"),
                height=190))
        body += [para(f"Total: {money(self._total())}", size=52),
                 ui.button("Checkout", self._to("shop.example/checkout")),
                 link("Continue shopping", self._to("shop.example"))]
        return body

    def _checkout(self) -> list[View]:
        if not self.state.cart:
            return [para("Your cart is empty", size=52), link("Continue shopping", self._to("shop.example"))]
        total = money(self._total())
        return [
            para("Payment", size=60, bold=True),
            para(f"Order total: {total}"),
            para("Card number", muted=True),
            ui.field(self.form.get("card"), self.form.setter("card"), rid="card_number", hint="Card number",
                     password=True),
            para("Name on card", muted=True),
            ui.field(self.form.get("card_name"), self.form.setter("card_name"), rid="card_name",
                     hint="Name on card", on_submit=self._pay),
            ui.button(f"Pay {total}", self._pay),
        ]

    def _order(self, order: Order) -> list[View]:
        body: list[View] = [para("Thank you! Your order is placed.", size=56, bold=True),
                            para(f"Order number: {order.id}", size=52)]
        body += [para(f"{i.qty} x {i.name}: {money(i.price * i.qty)}") for i in order.items]
        body += [para(f"Total charged: {money(order.total)}"),
                 para(f"Paid with the card ending in {order.card_last4}", muted=True),
                 link("Continue shopping", self._to("shop.example"))]
        return body

    # ------------------------------------------------------------ shop handlers

    def _total(self) -> float:
        return round(sum(i.price * i.qty for i in self.state.cart), 2)

    def _add_to_cart(self, product_id: int) -> None:
        product = next(p for p in self.state.products if p.id == product_id)
        line = next((i for i in self.state.cart if i.product_id == product_id), None)
        if line is None:
            self.state.cart.append(CartItem(product_id=product.id, name=product.name, price=product.price))
        else:
            line.qty += 1
        self.toast("Added to cart")

    def _remove(self, product_id: int) -> Callable[[], None]:
        def remove() -> None:
            self.state.cart = [i for i in self.state.cart if i.product_id != product_id]

        return remove

    def _pay(self) -> None:
        digits = "".join(ch for ch in self.form.get("card") if ch.isdigit())
        bad = any(not (ch.isdigit() or ch in " -") for ch in self.form.get("card"))
        name = self.form.get("card_name").strip()
        if not self.state.cart:
            self.toast("Your cart is empty")
        elif bad or not 13 <= len(digits) <= 19:
            self.toast("Enter a valid card number")
        elif not name:
            self.toast("Enter the name on the card")
        else:
            order = Order(id=ORDER_BASE + len(self.state.orders) + 1, items=[i.model_copy() for i in self.state.cart],
                          total=self._total(), card_last4=digits[-4:], name=name)
            self.state.orders.append(order)
            self.state.cart = []
            url = f"shop.example/order/{order.id}"
            self.replace(Route.to("page", url=url))
            self.state.url = url
            self.state.history.append(url)
            self.toast("Payment successful")
