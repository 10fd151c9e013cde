"""Synthetic exports of an online shop, with the ground truth that produced them.

`generate_sample` writes what a shop's source system would export (its own column
names, not our canonical ones) plus a `truth/` folder with the parameters and the
per-person latent values, so that deduplication and the models can be checked
against known answers.

Completed orders follow the BG/NBD process exactly (Fader, Hardie & Lee 2005,
"Counting your customers the easy way") and their values follow the Gamma-Gamma
model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves"), in the
parametrisation of lifetimes' `BetaGeoFitter` and `GammaGammaFitter`:

- lambda ~ Gamma(shape r, rate alpha), purchases per DAY while alive;
- p ~ Beta(a, b); after every REPEAT purchase the customer drops out with
  probability p (the first purchase never ends a life: the BG/NBD likelihood of a
  customer with x = 0 repeat purchases is exp(-lambda T), i.e. alive at birth);
- order value z ~ Gamma(shape p_gg, rate nu), nu ~ Gamma(shape q, rate gamma)
  (lifetimes calls gamma "v"); mean order value p_gg * gamma / (q - 1).

Everything else (cancelled and refunded orders, returns, events, duplicate
customer records) is added around those purchases without changing them.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
from tqdm import tqdm

# ---------------------------------------------------------------------------
# Process parameters. truth/params.json records them for every run.
# ---------------------------------------------------------------------------

# BG/NBD, lambda per day. r=0.8, alpha=50 gives a mean rate of one order every ~60 days
# and, with a=0.8, b=3 (mean dropout probability 0.21), ~5.6 completed orders per
# customer over a 3-year window: 1M customers -> ~5.9M orders -> ~10M order lines.
BGNBD_R = 0.8
BGNBD_ALPHA_DAYS = 50.0
BGNBD_A = 0.8
BGNBD_B = 3.0
# Gamma-Gamma: mean order value 6 * 35 / 3 = 70 EUR, right-skewed across orders and people.
GG_P = 6.0
GG_Q = 4.0
GG_GAMMA = 35.0

# First purchases ("births") fall uniformly in this leading share of [start, end], so
# every customer has at least ~30% of the window as observed history.
BIRTH_WINDOW_SHARE = 0.7
# Extra people with a customer record but no order, per buying customer.
PROSPECT_SHARE = 0.10
# Second customer records of the same person, as a share of all people; only buyers get
# one, since their split order history is what makes a duplicate costly.
DUPLICATE_SHARE = 0.02
# Extra non-completed orders per completed order; they do not touch the BG/NBD orders.
CANCELLED_SHARE = 0.03
REFUNDED_SHARE = 0.02
# Share of completed orders that later get a return invoice.
RETURN_SHARE = 0.03
RETURN_DELAY_DAYS = (2.0, 30.0)
# Order lines per order (1..4); mean 1.69 lines.
LINES_PER_ORDER_PROBS = (0.55, 0.27, 0.12, 0.06)
# Orders below this many cents stay one line, so every line keeps a sensible price.
MIN_SPLIT_CENTS = 500
LINE_QUANTITIES = (1, 2, 3, 4, 6)
LINE_QUANTITY_PROBS = (0.72, 0.16, 0.06, 0.03, 0.03)
CATALOGUE_SIZE = 4000

# Share of orders of GB/CH/US customers paid in their own currency. Their amounts are
# the EUR order value converted at these fixed rates (recorded in truth/params.json).
FOREIGN_CURRENCY_SHARE = 0.10
FX_RATES_PER_EUR = {"GBP": 0.85, "CHF": 0.95, "USD": 1.08}

CHANNELS = ("web", "app", "store")
CHANNEL_PROBS = (0.55, 0.30, 0.15)
PAYMENT_METHODS = ("card", "paypal", "invoice")
PAYMENT_PROBS = (0.50, 0.35, 0.15)
# People stick to their habits: most orders use the person's preferred channel/payment.
PREFERRED_CHANNEL_SHARE = 0.75
PREFERRED_PAYMENT_SHARE = 0.80

# Events per day = EVENT_RATE_PER_PURCHASE_RATE * lambda while engaged: ~15 events per
# buying customer on average (1M customers -> ~15M events).
EVENT_RATE_PER_PURCHASE_RATE = 3.2
# Engagement fades linearly to FADE_FLOOR over this many days before the dropout ...
FADE_DAYS = (60.0, 120.0)
FADE_FLOOR = 0.10
# ... and is near zero afterwards (the odd newsletter still gets opened).
AFTER_DROPOUT_RATE_SHARE = 0.03
# Prospects: page views and e-mail opens right after signup, waning with interest.
PROSPECT_EVENT_RATE_PER_DAY = 0.08
PROSPECT_INTEREST_DAYS = 60.0
NPS_SHARE_OF_SURVEYS = 0.6

MARKETING_OPT_IN_SHARE = 0.60
BIRTH_DATE_MISSING_SHARE = 0.12
EMAIL_MISSING_SHARE = 0.02
PHONE_MISSING_SHARE = 0.15

# Generation works on this many people at a time; the output depends on it (it fixes
# the random streams), so changing it changes the files for a given seed.
CHUNK_PERSONS = 100_000
CUSTOMER_ID_WIDTH = 7
INVOICE_BASE = 1_000_000

TRANSACTION_COLUMNS = (
    "InvoiceNo", "LineNo", "CustomerID", "InvoiceDate", "StockCode", "Quantity",
    "UnitPrice", "Currency", "Channel", "PaymentMethod", "Status",
)
CUSTOMER_COLUMNS = (
    "CustomerID", "Email", "Phone", "FullName", "BirthDate", "Gender", "City", "Country",
    "SignupDate", "MarketingOptIn", "UpdatedAt",
)
EVENT_KEYS = ("id", "user", "timestamp", "event", "channel", "score", "props")
TRUTH_CUSTOMER_COLUMNS = (
    "person_id", "customer_ids", "lambda_per_day", "p_dropout", "nu", "first_purchase_at",
    "dropout_at", "is_prospect", "completed_orders",
)
TRUTH_DUPLICATE_COLUMNS = ("customer_id", "person_id")

_TS_FORMAT = "%Y-%m-%d %H:%M:%S"
_STATUSES = ("completed", "cancelled", "refunded", "returned")
_COMPLETED, _CANCELLED, _REFUNDED, _RETURNED = range(4)

# Online shop traffic by UTC hour (quiet nights, lunch and evening peaks). Purchases and
# events are drawn in "operational" time and mapped into each day through this profile:
# a monotone time change within the day, so the BG/NBD process stays exact at day
# resolution (the time unit the models use) while timestamps get a realistic time of day.
_HOURLY_TRAFFIC = np.array([
    0.30, 0.18, 0.12, 0.10, 0.10, 0.15, 0.30, 0.55, 0.85, 1.05, 1.15, 1.25,
    1.40, 1.30, 1.15, 1.10, 1.15, 1.30, 1.55, 1.80, 1.95, 1.75, 1.20, 0.65,
])
_DAY_SHARE_KNOTS = np.concatenate([[0.0], np.cumsum(_HOURLY_TRAFFIC) / _HOURLY_TRAFFIC.sum()])
_HOUR_KNOTS = np.arange(25) / 24.0

# ---------------------------------------------------------------------------
# Events.
# ---------------------------------------------------------------------------

_EVENT_TYPES = ("page_view", "email_open", "email_click", "support_ticket", "complaint", "survey_response")
_PAGE_VIEW, _EMAIL_OPEN, _EMAIL_CLICK, _TICKET, _COMPLAINT, _SURVEY = range(6)
# Event mix per engagement phase: engaged, fading (the run-up to a dropout: more
# tickets, complaints and surveys, which score low), lapsed (after dropout), prospect.
_PHASE_ENGAGED, _PHASE_FADING, _PHASE_LAPSED, _PHASE_PROSPECT = range(4)
_EVENT_MIX = np.array([
    [0.62, 0.22, 0.07, 0.025, 0.005, 0.06],
    [0.50, 0.18, 0.04, 0.11, 0.06, 0.11],
    [0.30, 0.60, 0.04, 0.02, 0.02, 0.02],
    [0.60, 0.35, 0.05, 0.00, 0.00, 0.00],
])
_NPS_PROBS = {
    False: [0.01, 0.01, 0.01, 0.02, 0.02, 0.04, 0.05, 0.12, 0.22, 0.25, 0.25],
    True: [0.08, 0.06, 0.08, 0.10, 0.10, 0.12, 0.12, 0.10, 0.10, 0.07, 0.07],
}
_CSAT_PROBS = {False: [0.03, 0.05, 0.12, 0.35, 0.45], True: [0.20, 0.22, 0.25, 0.20, 0.13]}
# First-response time of support tickets in hours: lognormal(log median, sigma).
_TICKET_HOURS = {False: (math.log(4.0), 0.9), True: (math.log(14.0), 1.0)}
_TICKET_TOPICS = ("delivery", "payment", "product", "return", "account")
_COMPLAINT_TOPICS = ("delivery", "product_quality", "billing", "service")
_CAMPAIGNS = ("newsletter", "promotion", "winback", "reorder_reminder")
_EVENT_CHANNELS = ("web", "app", "email", "phone", "chat", "store")
# Channel mix per event type, over _EVENT_CHANNELS.
_EVENT_CHANNEL_MIX = np.array([
    [0.60, 0.40, 0.00, 0.00, 0.00, 0.00],
    [0.00, 0.00, 1.00, 0.00, 0.00, 0.00],
    [0.00, 0.00, 1.00, 0.00, 0.00, 0.00],
    [0.00, 0.00, 0.50, 0.25, 0.25, 0.00],
    [0.00, 0.00, 0.55, 0.30, 0.00, 0.15],
    [0.30, 0.10, 0.60, 0.00, 0.00, 0.00],
])

# ---------------------------------------------------------------------------
# People: countries, names, cities, phone numbers.
# ---------------------------------------------------------------------------

# Phone templates: {p} prefix, {s} subscriber number, {n[a:b]} slice of the national
# significant number. Prefixes are followed by `length` free digits; every such number
# is valid for its country according to libphonenumber (checked in the tests).
_COUNTRY_DATA: dict[str, dict] = {
    "DE": dict(
        weight=0.48, cc="49",
        prefixes=[("30", 8), ("40", 8), ("89", 8), ("69", 8), ("221", 7), ("211", 7), ("711", 7),
                  ("341", 7), ("1512", 7), ("1523", 7), ("1575", 7), ("1601", 7), ("1704", 7),
                  ("1726", 7), ("1767", 7)],
        phones=["+49 {p} {s}", "+49{p}{s}", "0049 {p} {s}", "0{p} {s}", "0{p}/{s}", "(0{p}) {s}",
                "0{p}-{s}", "+49 (0){p} {s}"],
        female="Anna Lena Sophie Marie Laura Julia Katharina Sabine Ute Jutta Brigitte Käthe Jana Lea "
               "Hannah Mia Emilia Charlotte Claudia Petra Birgit Renate Jessica Ilse Dörte Bärbel",
        male="Jürgen Jörg Björn Sören Günther Thomas Michael Andreas Stefan Markus Lukas Jonas Felix "
             "Maximilian Paul Tim Jan Uwe Klaus Dieter Bernd Rüdiger Matthias Sebastian Tobias",
        surnames="Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer "
                 "Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger "
                 "Hofmann Hartmann Lange Schmitt Werner Krause Meier Lehmann Köhler Weiß Jäger Groß "
                 "Fuchs Vogel Günther Böhm Möller Voß",
        cities="Berlin|Hamburg|München|Köln|Frankfurt am Main|Stuttgart|Düsseldorf|Leipzig|Dortmund|"
               "Essen|Bremen|Dresden|Hannover|Nürnberg|Münster|Lübeck|Göttingen|Würzburg",
        domains="gmx.de web.de t-online.de gmail.com outlook.de yahoo.de posteo.de",
    ),
    "AT": dict(
        weight=0.10, cc="43",
        prefixes=[("664", 7), ("676", 7), ("650", 7), ("699", 8), ("15", 6), ("17", 6),
                  ("316", 6), ("512", 6), ("662", 6)],
        phones=["+43 {p} {s}", "+43{p}{s}", "0043 {p} {s}", "0{p} {s}", "0{p}/{s}", "+43 (0){p} {s}"],
        female="Anna Lena Sophie Marie Laura Julia Katharina Sabine Elisabeth Theresa Magdalena "
               "Johanna Valentina Hannah",
        male="Jürgen Lukas Jonas Felix Maximilian Florian David Tobias Fabian Alexander Dominik "
             "Matthias Stefan Josef Franz",
        surnames="Gruber Huber Bauer Wagner Pichler Steiner Moser Mayer Hofer Leitner Berger Fuchs "
                 "Eder Fischer Schmid Winkler Weber Schwarz Maier Schneider Reiter Mayr Wimmer Egger "
                 "Brunner Lang Baumgartner Auer Binder Lechner Pöll Höller Strauß Müller",
        cities="Wien|Graz|Linz|Salzburg|Innsbruck|Klagenfurt|Villach|Wels|St. Pölten|Dornbirn",
        domains="gmx.at aon.at a1.net gmail.com outlook.com chello.at",
    ),
    "CH": dict(
        weight=0.04, cc="41", currency="CHF",
        prefixes=[("44", 7), ("31", 7), ("61", 7), ("22", 7), ("79", 7), ("78", 7), ("76", 7),
                  ("77", 7)],
        phones=["+41 {n[0:2]} {n[2:5]} {n[5:7]} {n[7:9]}", "0{n[0:2]} {n[2:5]} {n[5:7]} {n[7:9]}",
                "0041 {n[0:2]} {n[2:5]} {n[5:7]} {n[7:9]}", "+41{n[0:9]}", "0{n[0:9]}"],
        female="Anna Lea Mia Laura Sophie Léa Chloé Nadine Andrea Ursula Ruth Verena Céline Noémie",
        male="Noah Luca Leon Lars Reto Urs Beat Jürg Rolf Daniel Stéphane Loïc Matthias Jörg",
        surnames="Müller Meier Schmid Keller Weber Huber Schneider Meyer Steiner Fischer Gerber "
                 "Brunner Baumann Frei Zimmermann Moser Widmer Wyss Graf Roth Favre Rochat Bonvin "
                 "Künzli Jäggi Bühler Lüthi Zürcher",
        cities="Zürich|Genève|Basel|Bern|Lausanne|Winterthur|Luzern|St. Gallen|Lugano|Biel/Bienne",
        domains="bluewin.ch gmx.ch gmail.com hispeed.ch sunrise.ch",
    ),
    "FR": dict(
        weight=0.08, cc="33",
        prefixes=[("61", 7), ("62", 7), ("66", 7), ("67", 7), ("68", 7), ("75", 7), ("14", 7),
                  ("47", 7)],
        phones=["+33 {n[0:1]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:9]}", "0{n[0:1]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
                "0{n[0:1]}.{n[1:3]}.{n[3:5]}.{n[5:7]}.{n[7:9]}", "0{n[0:9]}", "+33{n[0:9]}",
                "0033 {n[0:1]} {n[1:9]}"],
        female="Léa Chloé Manon Camille Inès Jade Louise Zoé Hélène Élodie Mélanie Céline Amélie "
               "Anaïs Maëlle Marie Sophie Nathalie Isabelle Françoise Agnès Bérénice",
        male="Jérôme François Gaël Noël Loïc Hugo Lucas Louis Théo Nathan Mathéo Raphaël Jean-Luc "
             "Pierre Michel Éric Stéphane Frédéric Benoît Rémi Cédric Hervé",
        surnames="Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
                 "Lefèvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André "
                 "Lefebvre Mercier Dupont Lambert Bonnet François Gérard Bénard Lemaître Côté Brûlé",
        cities="Paris|Marseille|Lyon|Toulouse|Nice|Nantes|Strasbourg|Montpellier|Bordeaux|Lille|"
               "Besançon|Orléans|Nîmes|Saint-Étienne",
        domains="orange.fr free.fr laposte.net gmail.com sfr.fr hotmail.fr",
    ),
    "NL": dict(
        weight=0.06, cc="31",
        prefixes=[("61", 7), ("62", 7), ("64", 7), ("65", 7), ("20", 7), ("10", 7), ("30", 7)],
        phones=["+31 {p} {s}", "0{p} {s}", "0{p}-{s}", "0031 {p} {s}", "+31 (0){p} {s}", "+31{p}{s}"],
        female="Emma Julia Sophie Tess Zoë Anouk Sanne Lotte Fleur Eva Lieke Maaike Femke Ilse Noor",
        male="Daan Sem Lucas Levi Finn Bram Jesse Thijs Ruben Joost Sander Pieter Wouter Bas Koen",
        surnames="de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer|"
                 "de Boer|Mulder|de Groot|Bos|Vos|Peters|Hendriks|van Leeuwen|Dekker|Brouwer",
        cities="Amsterdam|Rotterdam|Den Haag|Utrecht|Eindhoven|Groningen|Tilburg|Almere|Breda|"
               "Nijmegen|'s-Hertogenbosch",
        domains="ziggo.nl kpnmail.nl gmail.com hotmail.nl outlook.com xs4all.nl",
    ),
    "GB": dict(
        weight=0.06, cc="44", currency="GBP",
        prefixes=[("7723", 6), ("7787", 6), ("7400", 6), ("7520", 6), ("7824", 6), ("1214", 6),
                  ("1612", 6), ("1134", 6), ("2079", 6), ("2084", 6)],
        phones=["+44 {p} {s}", "0{p} {s}", "+44 (0){p} {s}", "0044 {p} {s}", "+44{p}{s}", "0{p}{s}"],
        female="Olivia Amelia Isla Ava Emily Sophie Grace Chloe Charlotte Jessica Siobhan Niamh "
               "Ellie Hannah Lucy",
        male="Oliver George Harry Jack Jacob Charlie Thomas James William Oscar Liam Callum Rhys "
             "Owen Alfie",
        surnames="Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts "
                 "Robinson Thompson Wright Walker White Edwards Hughes Green Hall O'Brien O'Neill "
                 "Murphy MacDonald",
        cities="London|Birmingham|Manchester|Leeds|Glasgow|Liverpool|Bristol|Sheffield|Edinburgh|"
               "Cardiff|Newcastle upon Tyne",
        domains="btinternet.com gmail.com outlook.com yahoo.co.uk sky.com",
    ),
    "US": dict(
        weight=0.05, cc="1", currency="USD",
        prefixes=[("2125", 6), ("4156", 6), ("6173", 6), ("3124", 6), ("2027", 6), ("3056", 6),
                  ("5127", 6), ("7184", 6), ("8188", 6), ("2069", 6)],
        phones=["({n[0:3]}) {n[3:6]}-{n[6:10]}", "{n[0:3]}-{n[3:6]}-{n[6:10]}", "+1 {n[0:3]}-{n[3:6]}-{n[6:10]}",
                "+1 ({n[0:3]}) {n[3:6]}-{n[6:10]}", "{n[0:3]}.{n[3:6]}.{n[6:10]}", "+1{n[0:10]}",
                "1-{n[0:3]}-{n[3:6]}-{n[6:10]}"],
        female="Emma Olivia Ava Isabella Sophia Mia Madison Abigail Emily Ashley Jennifer Brittany Sarah",
        male="Liam Noah Ethan Mason Logan Michael David Christopher Matthew Joshua Daniel Tyler Brandon",
        surnames="Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
                 "Lopez Gonzalez Wilson Anderson Nguyen Kim Patel",
        cities="New York|Los Angeles|Chicago|Houston|Phoenix|San Francisco|Seattle|Boston|Austin|Miami",
        domains="gmail.com yahoo.com outlook.com icloud.com aol.com",
    ),
    "IT": dict(
        weight=0.04, cc="39",
        prefixes=[("0657", 6), ("0276", 6), ("347", 7), ("333", 7), ("320", 7), ("338", 7),
                  ("3491", 6)],
        phones=["+39 {p} {s}", "{p} {s}", "0039 {p} {s}", "+39{p}{s}", "{p}{s}"],
        female="Giulia Sofia Aurora Alice Ginevra Emma Giorgia Beatrice Chiara Francesca Martina Valentina",
        male="Leonardo Francesco Alessandro Lorenzo Mattia Andrea Gabriele Riccardo Niccolò Matteo "
             "Giuseppe Luca",
        surnames="Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo|Ricci|Marino|Greco|Bruno|Gallo|"
                 "Conti|De Luca|Mancini|Costa|Giordano|Rizzo|Lombardi|Moretti|D'Angelo",
        cities="Roma|Milano|Napoli|Torino|Palermo|Genova|Bologna|Firenze|Forlì|Cantù",
        domains="libero.it gmail.com virgilio.it alice.it hotmail.it",
    ),
    "ES": dict(
        weight=0.03, cc="34",
        prefixes=[("61", 7), ("62", 7), ("65", 7), ("91", 7), ("93", 7), ("69", 7)],
        phones=["+34 {n[0:3]} {n[3:5]} {n[5:7]} {n[7:9]}", "{n[0:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
                "{n[0:9]}", "+34{n[0:9]}", "0034 {n[0:3]} {n[3:6]} {n[6:9]}"],
        female="Lucía María Martina Sofía Paula Julia Valeria Alba Carmen Inés Nerea Ainhoa",
        male="Hugo Martín Lucas Mateo Leo Daniel Alejandro Pablo José Javier Álvaro Iñaki Adrián",
        surnames="García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín "
                 "Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Núñez Ibáñez",
        cities="Madrid|Barcelona|València|Sevilla|Zaragoza|Málaga|Bilbao|A Coruña|Córdoba|Cádiz",
        domains="gmail.com hotmail.es telefonica.net yahoo.es",
    ),
    "PL": dict(
        weight=0.03, cc="48",
        prefixes=[("50", 7), ("60", 7), ("69", 7), ("22", 7), ("12", 7), ("51", 7)],
        phones=["+48 {n[0:3]} {n[3:6]} {n[6:9]}", "{n[0:3]} {n[3:6]} {n[6:9]}", "{n[0:3]}-{n[3:6]}-{n[6:9]}",
                "+48{n[0:9]}", "0048 {n[0:3]} {n[3:6]} {n[6:9]}"],
        female="Zofia Zuzanna Julia Maja Hanna Małgorzata Agnieszka Katarzyna Anna Ewa Joanna Magdalena",
        male="Łukasz Paweł Piotr Krzysztof Tomasz Michał Jakub Wojciech Kacper Mateusz Jan Andrzej",
        surnames="Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański "
                 "Woźniak Dąbrowski Kozłowski Jankowski Mazur Krawczyk Piotrowski Grabowski Pawłowski",
        cities="Warszawa|Kraków|Łódź|Wrocław|Poznań|Gdańsk|Szczecin|Lublin|Białystok|Katowice",
        domains="wp.pl onet.pl interia.pl gmail.com o2.pl",
    ),
    "CN": dict(
        weight=0.03, cc="86",
        prefixes=[("138", 8), ("139", 8), ("136", 8), ("150", 8), ("186", 8), ("135", 8)],
        phones=["+86 {n[0:3]} {n[3:7]} {n[7:11]}", "{n[0:3]} {n[3:7]} {n[7:11]}", "{n[0:11]}",
                "+86{n[0:11]}", "0086 {n[0:11]}", "{n[0:3]}-{n[3:7]}-{n[7:11]}"],
        # Han characters with their pinyin (used for e-mail addresses and Latin spellings).
        female="芳:Fang 娜:Na 秀英:Xiuying 敏:Min 静:Jing 丽:Li 艳:Yan 娟:Juan 霞:Xia 婷:Ting 雪:Xue "
               "慧:Hui",
        male="伟:Wei 强:Qiang 磊:Lei 军:Jun 洋:Yang 勇:Yong 杰:Jie 涛:Tao 明:Ming 超:Chao 浩:Hao 鹏:Peng",
        surnames="王:Wang 李:Li 张:Zhang 刘:Liu 陈:Chen 杨:Yang 赵:Zhao 黄:Huang 周:Zhou 吴:Wu 徐:Xu "
                 "孙:Sun 胡:Hu 朱:Zhu 高:Gao 林:Lin 何:He 郭:Guo 马:Ma 罗:Luo",
        cities="北京|上海|广州|深圳|成都|杭州|武汉|南京",
        domains="qq.com 163.com 126.com sina.com gmail.com",
    ),
}
# Chinese customers write their name in Han characters (family name first) this often,
# otherwise in pinyin, given name first.
_HAN_NAME_SHARE = 0.7

_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ł": "l", "ø": "o",
                           "æ": "ae", "œ": "oe"})


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _email_part(latin: str) -> str:
    # Only letters and hyphens: e-mail uniqueness relies on the name part having no digits.
    ascii_text = _strip_accents(latin.lower().translate(_TRANSLIT))
    return "".join(c for c in ascii_text if ("a" <= c <= "z") or c == "-")


def _split_pool(text: str) -> list[str]:
    return text.split("|") if "|" in text else text.split()


@dataclass(frozen=True)
class _Pool:
    """One name pool over all countries: country k owns entries offsets[k]:offsets[k+1]."""

    native: np.ndarray  # as written by the person (Han characters for Chinese names)
    latin: np.ndarray  # Latin spelling (pinyin for Chinese names)
    email: np.ndarray  # ASCII letters for e-mail addresses
    initial: np.ndarray  # first letter of `email`
    offsets: np.ndarray

    @classmethod
    def build(cls, per_country: list[list[str]]) -> _Pool:
        native, latin = [], []
        for entries in per_country:
            for entry in entries:
                han, _, pinyin = entry.partition(":")
                native.append(han)
                latin.append(pinyin or han)
        email = [_email_part(x) for x in latin]
        sizes = [len(e) for e in per_country]
        return cls(np.array(native, dtype=object), np.array(latin, dtype=object),
                   np.array(email, dtype=object), np.array([e[:1] for e in email], dtype=object),
                   np.concatenate([[0], np.cumsum(sizes)]))

    def draw(self, rng: np.random.Generator, country: np.ndarray, zipf: float = 0.0) -> np.ndarray:
        """Global pool index per person; zipf > 0 makes the first entries more common."""
        size = self.offsets[country + 1] - self.offsets[country]
        u = rng.random(country.size)
        if zipf:
            # Inverse CDF of a continuous power law over [1, size + 1): a few big cities.
            rank = ((size + 1.0) ** (1.0 - zipf) - 1.0) * u + 1.0
            local = np.floor(rank ** (1.0 / (1.0 - zipf))).astype(np.int64) - 1
            local = np.minimum(local, size - 1)
        else:
            local = np.floor(u * size).astype(np.int64)
        return self.offsets[country] + local


_COUNTRIES = tuple(_COUNTRY_DATA)
_COUNTRY_WEIGHTS = np.array([d["weight"] for d in _COUNTRY_DATA.values()])
_COUNTRY_WEIGHTS = _COUNTRY_WEIGHTS / _COUNTRY_WEIGHTS.sum()
_COUNTRY_CN = _COUNTRIES.index("CN")
_FEMALE = _Pool.build([_split_pool(d["female"]) for d in _COUNTRY_DATA.values()])
_MALE = _Pool.build([_split_pool(d["male"]) for d in _COUNTRY_DATA.values()])
_SURNAMES = _Pool.build([_split_pool(d["surnames"]) for d in _COUNTRY_DATA.values()])
_CITIES = _Pool.build([_split_pool(d["cities"]) for d in _COUNTRY_DATA.values()])
_DOMAINS = _Pool.build([_split_pool(d["domains"]) for d in _COUNTRY_DATA.values()])
_CURRENCIES = ("EUR", "GBP", "CHF", "USD")
_COUNTRY_CURRENCY = np.array([_CURRENCIES.index(d.get("currency", "EUR")) for d in _COUNTRY_DATA.values()])
_CURRENCY_RATE = np.array([1.0] + [FX_RATES_PER_EUR[c] for c in _CURRENCIES[1:]])
_N_PHONE_TEMPLATES = np.array([len(d["phones"]) for d in _COUNTRY_DATA.values()])

_PLACEHOLDER = re.compile(r"\{(p|s|n\[(\d+):(\d+)\])\}")


def _render_phone(template: str, prefix: str, subscriber: pl.Expr) -> pl.Expr:
    """A polars expression writing `template` for one prefix and a column of subscriber numbers."""
    national = pl.lit(prefix) + subscriber
    parts: list[pl.Expr] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(template):
        if match.start() > pos:
            parts.append(pl.lit(template[pos:match.start()]))
        if match.group(1) == "p":
            parts.append(pl.lit(prefix))
        elif match.group(1) == "s":
            parts.append(subscriber)
        else:
            a, b = int(match.group(2)), int(match.group(3))
            parts.append(national.str.slice(a, b - a))
        pos = match.end()
    if pos < len(template):
        parts.append(pl.lit(template[pos:]))
    return pl.concat_str(parts)


# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationReport:
    """What `generate_sample` wrote.

    Attributes
    ----------
    out_dir : the output folder.
    paths : file role -> path written. Roles: transactions, customers, events,
        truth_params, truth_customers, truth_duplicates.
    rows : file role -> data rows written (header excluded); every role but truth_params.
    customers : buying people simulated (the `customers` argument).
    prospects : extra people with a customer record and no order.
    duplicate_records : second customer records of an already known person.
    completed_orders : completed orders, i.e. the BG/NBD purchases.
    """

    out_dir: Path
    paths: Mapping[str, Path]
    rows: Mapping[str, int]
    customers: int
    prospects: int
    duplicate_records: int
    completed_orders: int


def generate_sample(
    out_dir: Path,
    customers: int,
    seed: int = 42,
    start: date = date(2023, 1, 1),
    end: date = date(2025, 12, 31),
    progress: bool = True,
) -> GenerationReport:
    """Write synthetic shop exports and the ground truth behind them into `out_dir`.

    Parameters
    ----------
    out_dir : folder to write to; created if missing, files of the same name are replaced.
    customers : number of BUYING people (the BG/NBD population). On top come ~10%
        prospects (people who never order) and ~2% duplicate customer records, so
        customers.csv holds about 1.12 x `customers` rows.
    seed : random seed; the same arguments give byte-identical files.
    start, end : observation window, both days inclusive, UTC. Nothing is dated after
        `end` 23:59:59.
    progress : show a tqdm progress bar (people done) on stderr.

    Returns
    -------
    GenerationReport: the paths written and their row counts.

    Files (source-system column names; see the module docstring for the process)
    -----
    transactions.csv : one row per order line; returns are separate `R<InvoiceNo>` invoices.
    customers.csv : one row per customer record (a person may have two).
    events.jsonl : one behaviour event per line.
    truth/params.json : true BG/NBD (alpha in days) and Gamma-Gamma parameters, the window.
    truth/customers.csv : one row per real person: ids, latent lambda (per day), p, nu, dates.
    truth/duplicates.csv : one row per customer record: the person it belongs to.
    """
    if isinstance(customers, bool) or not isinstance(customers, numbers.Integral) or customers < 1:
        raise ValueError(f"customers must be a positive integer, got {customers!r}")
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    plan = _Plan.build(int(customers), start, end)
    out_dir = Path(out_dir)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "transactions": out_dir / "transactions.csv",
        "customers": out_dir / "customers.csv",
        "events": out_dir / "events.jsonl",
        "truth_params": truth_dir / "params.json",
        "truth_customers": truth_dir / "customers.csv",
        "truth_duplicates": truth_dir / "duplicates.csv",
    }
    tabular = ("transactions", "customers", "events", "truth_customers", "truth_duplicates")
    rows = dict.fromkeys(tabular, 0)
    invoices = completed = 0
    streams = np.random.SeedSequence(seed).spawn(len(plan.chunks) + 1)
    catalogue = _build_catalogue(np.random.default_rng(streams[0]))
    files: dict[str, BinaryIO] = {}
    try:
        for name in tabular:
            files[name] = open(paths[name], "wb")  # noqa: SIM115 - closed below
        with tqdm(total=plan.persons, unit="person", desc="generate-sample", file=sys.stderr,
                  disable=not progress) as bar:
            for stream, chunk in zip(streams[1:], plan.chunks, strict=True):
                tables = _generate_chunk(plan, chunk, catalogue, np.random.default_rng(stream),
                                         invoice_offset=invoices, event_offset=rows["events"])
                for name in tabular:
                    _append(files[name], tables[name], header=chunk.index == 0, jsonl=name == "events")
                    rows[name] += tables[name].height
                invoices += tables["invoices"]
                completed += tables["completed_orders"]
                bar.update(chunk.buyers + chunk.prospects)
    finally:
        for handle in files.values():
            handle.close()
    paths["truth_params"].write_text(json.dumps(_params(plan, seed), indent=2) + "\n", encoding="utf-8")
    return GenerationReport(out_dir=out_dir, paths=paths, rows=rows, customers=plan.customers,
                            prospects=plan.prospects, duplicate_records=plan.duplicates,
                            completed_orders=completed)


def _append(handle: BinaryIO, frame: pl.DataFrame, header: bool, jsonl: bool) -> None:
    if jsonl:
        # One pre-rendered JSON text column: written raw, one per line.
        frame.write_csv(handle, include_header=False, quote_style="never")
    else:
        # float_precision=2: the only float columns written are prices (cents); the truth's
        # latent rates are written as text by `_generate_chunk`.
        frame.write_csv(handle, include_header=header, datetime_format=_TS_FORMAT, float_precision=2)


# ---------------------------------------------------------------------------
# Plan: how people, records and ids are split over chunks.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    index: int
    buyers: int
    prospects: int
    duplicates: int
    first_person: int  # global index of the chunk's first person (its buyers, then prospects)
    first_record: int  # customer records in earlier chunks: CustomerIDs come in blocks


@dataclass(frozen=True)
class _Plan:
    customers: int
    prospects: int
    duplicates: int
    persons: int
    start: date
    end: date
    horizon_days: float  # length of the window in days, `end` included
    start_epoch: int  # UTC epoch seconds of `start` 00:00
    email_modulus: int
    chunks: tuple[_Chunk, ...]

    @classmethod
    def build(cls, customers: int, start: date, end: date) -> _Plan:
        prospects = round(customers * PROSPECT_SHARE)
        persons = customers + prospects
        n_chunks = max(1, math.ceil(persons / CHUNK_PERSONS))
        # Only buyers get a second record: their split order history is what makes it costly.
        duplicates = min(round(persons * DUPLICATE_SHARE), customers)
        chunks, first_person, records = [], 0, 0
        for k in range(n_chunks):
            buyers = _share(customers, k, n_chunks)
            chunk_prospects = _share(prospects, k, n_chunks)
            dups = min(_share(duplicates, k, n_chunks), buyers)
            chunks.append(_Chunk(k, buyers, chunk_prospects, dups, first_person, records))
            first_person += buyers + chunk_prospects
            records += buyers + chunk_prospects + dups
        duplicates = records - persons
        if records >= 10**CUSTOMER_ID_WIDTH:
            raise ValueError(f"{records} customer records do not fit the {CUSTOMER_ID_WIDTH}-digit "
                             f"CustomerID; generate fewer than ~{10**CUSTOMER_ID_WIDTH // 1.13:.0f} customers")
        for code, data in _COUNTRY_DATA.items():
            capacity = len(data["prefixes"]) * 10 ** min(n for _, n in data["prefixes"])
            if persons > capacity:
                raise ValueError(f"{persons} people do not fit the phone number plan of {code} "
                                 f"({capacity} numbers); generate fewer customers")
        # Numbers in e-mail addresses: one per person plus one per second address.
        email_modulus = 10 ** max(4, len(str(2 * persons)))
        start_epoch = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp())
        return cls(customers, prospects, duplicates, persons, start, end,
                   float((end - start).days + 1), start_epoch, email_modulus, tuple(chunks))


def _share(total: int, k: int, parts: int) -> int:
    """Part k of `total` split into `parts` near-equal integer parts."""
    return total * (k + 1) // parts - total * k // parts


def _params(plan: _Plan, seed: int) -> dict:
    return {
        "seed": seed,
        "customers": plan.customers,
        "prospects": plan.prospects,
        "duplicate_records": plan.duplicates,
        "start": plan.start.isoformat(),
        "end": plan.end.isoformat(),
        "observation_end": f"{date.fromordinal(plan.end.toordinal() + 1).isoformat()}T00:00:00Z",
        "time_unit": "D",
        "bgnbd": {"r": BGNBD_R, "alpha": BGNBD_ALPHA_DAYS, "a": BGNBD_A, "b": BGNBD_B},
        "gamma_gamma": {"p": GG_P, "q": GG_Q, "gamma": GG_GAMMA},
        "mean_order_value": GG_P * GG_GAMMA / (GG_Q - 1.0),
        "currency": "EUR",
        "fx_rates_per_eur": FX_RATES_PER_EUR,
        "birth_window_share": BIRTH_WINDOW_SHARE,
        "shares": {
            "prospects": PROSPECT_SHARE,
            "duplicate_records": DUPLICATE_SHARE,
            "cancelled_orders": CANCELLED_SHARE,
            "refunded_orders": REFUNDED_SHARE,
            "returned_orders": RETURN_SHARE,
            "foreign_currency_orders_gb_ch_us": FOREIGN_CURRENCY_SHARE,
        },
        "events": {
            "rate_per_purchase_rate": EVENT_RATE_PER_PURCHASE_RATE,
            "fade_days": list(FADE_DAYS),
            "fade_floor": FADE_FLOOR,
            "after_dropout_rate_share": AFTER_DROPOUT_RATE_SHARE,
        },
    }


def _build_catalogue(rng: np.random.Generator) -> tuple[pl.Series, np.ndarray]:
    """Stock codes like '85123' or '85123A', and the cumulative popularity (Zipf-like)."""
    numbers = rng.choice(np.arange(10000, 100000), size=CATALOGUE_SIZE, replace=False)
    letters = rng.choice(np.array(list("ABCDEFGHKLMNPRSW"), dtype=object), CATALOGUE_SIZE)
    codes = numbers.astype(str).astype(object) + np.where(rng.random(CATALOGUE_SIZE) < 0.12, letters, "")
    weights = 1.0 / np.arange(1, CATALOGUE_SIZE + 1) ** 1.05
    return _text(codes.tolist()), np.cumsum(weights) / weights.sum()


# ---------------------------------------------------------------------------
# Small vectorised helpers.
# ---------------------------------------------------------------------------


def _to_epoch(plan: _Plan, t_days: np.ndarray) -> np.ndarray:
    """UTC epoch seconds of operational times (days since start), given a time of day."""
    day = np.floor(t_days)
    within = np.interp(t_days - day, _DAY_SHARE_KNOTS, _HOUR_KNOTS)
    return plan.start_epoch + np.floor((day + within) * 86400.0).astype(np.int64)


def _timestamps(plan: _Plan, t_days: np.ndarray) -> pl.Series:
    """Datetime column of operational times; NaN becomes null."""
    known = ~np.isnan(t_days)
    column = pl.from_epoch(pl.Series(_to_epoch(plan, np.where(known, t_days, 0.0))), time_unit="s")
    return column.scatter(np.flatnonzero(~known), None) if not known.all() else column


def _draw(rng: np.random.Generator, probs, size: int) -> np.ndarray:
    """Category indices with the given probabilities."""
    return np.searchsorted(np.cumsum(probs), rng.random(size) * (1 - 1e-12), side="right")


def _draw_rows(rng: np.random.Generator, table: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One category per entry, from the probability row `table[row]`."""
    cum = np.cumsum(table, axis=1)
    u = rng.random(row.size) * (1 - 1e-12)
    return (u[:, None] >= cum[row]).sum(axis=1)


def _first_index(groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For entries sorted by group, the index of the group's first entry."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)[groups]


# ---------------------------------------------------------------------------
# Purchases and order lines.
# ---------------------------------------------------------------------------


def _simulate_purchases(
    rng: np.random.Generator, lam: np.ndarray, p: np.ndarray, birth: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD purchase times in days, in rounds over the customers still alive.

    Returns (owner, t, dropout_t): one entry per purchase sorted by owner then time, and
    per customer the time of the purchase after which they dropped out (NaN: alive at end).
    """
    owners, times = [np.arange(lam.size)], [birth]
    dropout_t = np.full(lam.size, np.nan)
    active, t = np.arange(lam.size), birth.copy()
    while active.size:
        t_next = t[active] + rng.exponential(1.0, active.size) / lam[active]
        keep = t_next < horizon
        active, t_next = active[keep], t_next[keep]
        t[active] = t_next
        owners.append(active)
        times.append(t_next)
        # Dropout only after repeat purchases (Fader, Hardie & Lee 2005, assumption iv):
        # the BG/NBD likelihood of x = 0 repeat purchases, exp(-lambda T), has no dropout.
        drop = rng.random(active.size) < p[active]
        dropout_t[active[drop]] = t_next[drop]
        active = active[~drop]
    owner, t_all = np.concatenate(owners), np.concatenate(times)
    order = np.lexsort((t_all, owner))
    return owner[order], t_all[order], dropout_t


def _split_order_values(
    rng: np.random.Generator, cents: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split order values (integer cents) into 1-4 lines whose quantity x price sums exactly.

    Returns (order_index, line_no, quantity, unit_price_cents), one entry per line; the
    lines of an order are adjacent and numbered 1..n in random order.
    """
    n_orders = cents.size
    n_lines = 1 + _draw(rng, LINES_PER_ORDER_PROBS, n_orders)
    n_lines = np.where(cents < MIN_SPLIT_CENTS, 1, n_lines)
    order = np.repeat(np.arange(n_orders), n_lines)
    position = np.arange(order.size) - _first_index(order, n_lines)
    last = position == n_lines[order] - 1
    # Dirichlet shares, floored at half an equal share so no line gets a token price.
    weight = rng.gamma(2.0, 1.0, order.size)
    share = 0.5 / n_lines[order] + 0.5 * weight / np.bincount(order, weight, minlength=n_orders)[order]
    qty = np.asarray(LINE_QUANTITIES)[_draw(rng, LINE_QUANTITY_PROBS, order.size)]
    # The last line takes the remainder at quantity 1, so the lines sum to the cent; it is
    # at least its own share (>= 62 cents), since the others round down.
    qty = np.where(last, 1, qty)
    price = np.floor(share * cents[order] / qty).astype(np.int64)
    others = np.bincount(order, np.where(last, 0, qty * price), minlength=n_orders)
    price = np.where(last, cents[order] - np.round(others[order]).astype(np.int64), price)
    # Random line numbers, so the quantity-1 remainder line is not always the last one.
    shuffled = np.lexsort((rng.random(order.size), order))
    line_no = np.empty(order.size, dtype=np.int64)
    line_no[shuffled] = position + 1
    return order, line_no, qty, price


# ---------------------------------------------------------------------------
# One chunk of people.
# ---------------------------------------------------------------------------


def _generate_chunk(plan: _Plan, chunk: _Chunk, catalogue: tuple[pl.Series, np.ndarray],
                    rng: np.random.Generator, invoice_offset: int, event_offset: int) -> dict:
    """All output rows of one chunk of people, as polars frames keyed by file role."""
    nb, nd = chunk.buyers, chunk.duplicates
    n_persons = nb + chunk.prospects
    horizon = plan.horizon_days

    # --- BG/NBD and Gamma-Gamma latent values, and the completed orders -------------
    lam = rng.gamma(BGNBD_R, 1.0 / BGNBD_ALPHA_DAYS, nb)
    p_drop = rng.beta(BGNBD_A, BGNBD_B, nb)
    nu = rng.gamma(GG_Q, 1.0 / GG_GAMMA, nb)
    birth = rng.uniform(0.0, BIRTH_WINDOW_SHARE * horizon, nb)
    owner, t_buy, dropout_t = _simulate_purchases(rng, lam, p_drop, birth, horizon)
    n_completed = np.bincount(owner, minlength=nb)
    first_buy = _first_index(np.arange(nb), n_completed)
    rank_in_person = np.arange(owner.size) - first_buy[owner]
    n_comp = owner.size
    value = np.maximum(np.round(rng.gamma(GG_P, 1.0 / nu[owner]) * 100.0), 1).astype(np.int64)

    # --- signups: buyers register shortly, or a few weeks, before their first order ---
    signup = np.empty(n_persons)
    early = rng.random(nb) < 0.6
    signup[:nb] = birth - rng.uniform(0.001, 0.02, nb) - np.where(early, rng.exponential(20.0, nb), 0.0)
    signup[nb:] = rng.uniform(0.0, horizon, chunk.prospects)

    # --- second registrations of some buyers -----------------------------------------
    # People with repeat orders register again just before one of them, so some of their
    # orders carry the second id; one-order people register again at some later time.
    # Arrays over duplicates get one padding entry (index nd) that matches nobody.
    dup_person = np.sort(rng.choice(nb, nd, replace=False)).astype(np.int64)
    dup_kind_email = rng.random(nd) < 0.5  # else recognisable by phone + name
    dup_of = np.full(n_persons, nd)
    dup_of[dup_person] = np.arange(nd)
    n_dup_orders = n_completed[dup_person]
    switch_rank = np.where(n_dup_orders >= 2,
                           1 + np.floor(rng.random(nd) * (n_dup_orders - 1)).astype(np.int64), -1)
    switch_t = t_buy[first_buy[dup_person] + np.maximum(switch_rank, 0)]
    dup_signup = np.where(switch_rank > 0, switch_t - rng.uniform(0.001, 0.02, nd),
                          birth[dup_person] + rng.random(nd) * (horizon - birth[dup_person]))
    switch_rank_pad = np.append(switch_rank, -2)
    dup_signup_pad = np.append(dup_signup, np.inf)

    # CustomerIDs: a block per chunk, in order of signup within it.
    rec_signup = np.concatenate([signup, dup_signup])
    id_rank = np.empty(rec_signup.size, dtype=np.int64)
    id_rank[np.argsort(rec_signup, kind="stable")] = np.arange(rec_signup.size)
    rec_ids = pl.Series(chunk.first_record + 1 + id_rank).cast(pl.String).str.zfill(CUSTOMER_ID_WIDTH)

    # --- cancelled and refunded orders come on top of the completed ones -------------
    # A cancelled order follows the order it belongs with by minutes to hours, a refunded
    # one by up to a few days.
    cancel = rng.random(n_comp) < CANCELLED_SHARE
    refund = rng.random(n_comp) < REFUNDED_SHARE
    o_owner = np.concatenate([owner, owner[cancel], owner[refund]])
    o_t = np.concatenate([t_buy, t_buy[cancel] + rng.uniform(0.003, 0.1, cancel.sum()),
                          t_buy[refund] + rng.uniform(0.02, 3.0, refund.sum())])
    o_status = np.concatenate([np.full(n_comp, _COMPLETED), np.full(cancel.sum(), _CANCELLED),
                               np.full(refund.sum(), _REFUNDED)])
    extra_value = np.round(rng.gamma(GG_P, 1.0 / nu[o_owner[n_comp:]]) * 100.0)
    o_value = np.concatenate([value, np.maximum(extra_value, 1).astype(np.int64)])
    o_dup = dup_of[o_owner]
    is_switch = np.zeros(o_owner.size, bool)
    is_switch[:n_comp] = rank_in_person == switch_rank_pad[o_dup[:n_comp]]
    on_dup = (o_t >= dup_signup_pad[o_dup]) & ((rng.random(o_owner.size) < 0.7) | is_switch)
    o_record = np.where(on_dup, n_persons + o_dup, o_owner)
    keep = o_t < horizon
    o_epoch = _to_epoch(plan, o_t)
    # Invoice numbers follow time within the chunk.
    o_sort = np.flatnonzero(keep)[np.lexsort((o_owner[keep], o_epoch[keep]))]
    o_owner, o_t, o_status, o_value, o_record, o_epoch = (
        x[o_sort] for x in (o_owner, o_t, o_status, o_value, o_record, o_epoch))
    n_orders = o_owner.size
    o_invoice = INVOICE_BASE + invoice_offset + 1 + np.arange(n_orders)

    # --- habits, currency and order lines --------------------------------------------
    country = _draw(rng, _COUNTRY_WEIGHTS, n_persons)
    pref_channel = _draw(rng, CHANNEL_PROBS, n_persons)
    pref_payment = _draw(rng, PAYMENT_PROBS, n_persons)
    o_channel = np.where(rng.random(n_orders) < PREFERRED_CHANNEL_SHARE, pref_channel[o_owner],
                         _draw(rng, CHANNEL_PROBS, n_orders))
    o_payment = np.where(rng.random(n_orders) < PREFERRED_PAYMENT_SHARE, pref_payment[o_owner],
                         _draw(rng, PAYMENT_PROBS, n_orders))
    local = _COUNTRY_CURRENCY[country[o_owner]]
    o_currency = np.where((local > 0) & (rng.random(n_orders) < FOREIGN_CURRENCY_SHARE), local, 0)
    o_amount = np.maximum(np.round(o_value * _CURRENCY_RATE[o_currency]), 1).astype(np.int64)
    l_order, l_no, l_qty, l_price = _split_order_values(rng, o_amount)
    codes, code_cdf = catalogue
    l_code = np.searchsorted(code_cdf, rng.random(l_order.size) * (1 - 1e-12), side="right")

    # --- returns: some lines of some completed orders, days later --------------------
    ret_t = o_t + rng.uniform(*RETURN_DELAY_DAYS, n_orders)
    returned = (o_status == _COMPLETED) & (rng.random(n_orders) < RETURN_SHARE) & (ret_t < horizon)
    pick = returned[l_order] & (rng.random(l_order.size) < 0.6)
    none_picked = returned & (np.bincount(l_order, pick, minlength=n_orders) == 0)
    pick |= none_picked[l_order] & (l_no == 1)
    r_line = np.flatnonzero(pick)
    r_order = l_order[r_line]
    r_qty = -(1 + np.floor(rng.random(r_line.size) * l_qty[r_line]).astype(np.int64))
    _, r_group, r_count = np.unique(r_order, return_inverse=True, return_counts=True)
    r_no = np.arange(r_line.size) - _first_index(r_group, r_count) + 1

    invoice_text = pl.Series(o_invoice).cast(pl.String)
    lines = _transaction_frame(
        invoice=invoice_text.gather(l_order), line_no=l_no, customer=rec_ids.gather(o_record[l_order]),
        epoch=o_epoch[l_order], code=codes.gather(l_code), qty=l_qty, price=l_price,
        currency=o_currency[l_order], channel=o_channel[l_order], payment=o_payment[l_order],
        status=o_status[l_order], sort_key=o_invoice[l_order])
    returns = _transaction_frame(
        invoice="R" + invoice_text.gather(r_order), line_no=r_no, customer=rec_ids.gather(o_record[r_order]),
        epoch=_to_epoch(plan, ret_t[r_order]), code=codes.gather(l_code[r_line]), qty=r_qty, price=l_price[r_line],
        currency=o_currency[r_order], channel=o_channel[r_order], payment=o_payment[r_order],
        status=np.full(r_line.size, _RETURNED), sort_key=o_invoice[r_order] + 10**12)
    transactions = pl.concat([lines, returns]).sort(["InvoiceDate", "_sort", "LineNo"]).drop("_sort")

    # --- events ------------------------------------------------------------------------
    e_owner, e_t, e_phase = _simulate_events(rng, plan, lam, signup, dropout_t, nb, n_persons)
    e_dup = dup_of[e_owner]
    e_on_dup = (e_t >= dup_signup_pad[e_dup]) & (rng.random(e_owner.size) < 0.5)
    e_record = np.where(e_on_dup, n_persons + e_dup, e_owner)
    events = _event_lines(rng, plan, e_t, e_phase, rec_ids.gather(e_record), event_offset)

    # --- customer records ------------------------------------------------------------
    customers = _customer_records(rng, plan, chunk, country, signup, dup_person, dup_kind_email,
                                  dup_signup, rec_ids)

    # --- truth ---------------------------------------------------------------------------
    person_ids = "P" + pl.Series(chunk.first_person + 1 + np.arange(n_persons)).cast(pl.String).str.zfill(8)
    truth_ids = rec_ids.head(n_persons)
    if nd:
        truth_ids = truth_ids.scatter(dup_person, truth_ids.gather(dup_person) + "|" + rec_ids.tail(nd))
    no_value = np.full(chunk.prospects, np.nan)
    truth_customers = pl.DataFrame({
        "person_id": person_ids,
        "customer_ids": truth_ids,
        # Text with full precision, so float_precision=2 of the CSV writer does not apply.
        "lambda_per_day": _float_text(np.concatenate([lam, no_value])),
        "p_dropout": _float_text(np.concatenate([p_drop, no_value])),
        "nu": _float_text(np.concatenate([nu, no_value])),
        "first_purchase_at": _timestamps(plan, np.concatenate([birth, no_value])),
        "dropout_at": _timestamps(plan, np.concatenate([dropout_t, no_value])),
        "is_prospect": np.arange(n_persons) >= nb,
        "completed_orders": np.concatenate([n_completed, np.zeros(chunk.prospects, np.int64)]),
    })
    rec_person = np.concatenate([np.arange(n_persons), dup_person])
    truth_duplicates = pl.DataFrame({"customer_id": rec_ids, "person_id": person_ids.gather(rec_person)})
    return {
        "transactions": transactions.select(TRANSACTION_COLUMNS),
        "customers": customers.select(CUSTOMER_COLUMNS),
        "events": events,
        "truth_customers": truth_customers.select(TRUTH_CUSTOMER_COLUMNS),
        "truth_duplicates": truth_duplicates.select(TRUTH_DUPLICATE_COLUMNS).sort("customer_id"),
        "invoices": n_orders,
        "completed_orders": int((o_status == _COMPLETED).sum()),
    }


def _float_text(values: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.Float64).fill_nan(None).cast(pl.String)


def _transaction_frame(*, invoice: pl.Series, line_no, customer: pl.Series, epoch, code: pl.Series, qty, price,
                       currency, channel, payment, status, sort_key) -> pl.DataFrame:
    """transactions.csv rows (plus a `_sort` key) from per-line arrays."""
    return pl.DataFrame({
        "InvoiceNo": invoice,
        "LineNo": pl.Series(line_no, dtype=pl.Int64),
        "CustomerID": customer,
        "InvoiceDate": pl.from_epoch(pl.Series(epoch, dtype=pl.Int64), time_unit="s"),
        "StockCode": code,
        "Quantity": pl.Series(qty, dtype=pl.Int64),
        "UnitPrice": pl.Series(price, dtype=pl.Int64) / 100.0,
        "Currency": pl.Series(_CURRENCIES).gather(currency),
        "Channel": pl.Series(CHANNELS).gather(channel),
        "PaymentMethod": pl.Series(PAYMENT_METHODS).gather(payment),
        "Status": pl.Series(_STATUSES).gather(status),
        "_sort": pl.Series(sort_key, dtype=pl.Int64),
    })


# ---------------------------------------------------------------------------
# Events.
# ---------------------------------------------------------------------------


def _poisson_segments(rng: np.random.Generator, who: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                      rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous Poisson event times on [t0, t1) per segment: (owner, time)."""
    length = np.maximum(t1 - t0, 0.0)
    n = rng.poisson(rate * length)
    return np.repeat(who, n), np.repeat(t0, n) + rng.random(n.sum()) * np.repeat(length, n)


def _simulate_events(rng: np.random.Generator, plan: _Plan, lam: np.ndarray, signup: np.ndarray,
                     dropout_t: np.ndarray, nb: int, n_persons: int):
    """Event (owner, time in days, phase): engagement proportional to the purchase rate."""
    horizon = plan.horizon_days
    owners, times, phases = [], [], []

    def add(who: np.ndarray, t: np.ndarray, phase: int) -> None:
        owners.append(who)
        times.append(t)
        phases.append(np.full(who.size, phase))

    buyers = np.arange(nb)
    rate = EVENT_RATE_PER_PURCHASE_RATE * lam
    ev_start = np.maximum(signup[:nb], 0.0)
    dropped = ~np.isnan(dropout_t)
    drop_t = np.where(dropped, dropout_t, horizon)
    fade_len = rng.uniform(*FADE_DAYS, nb)
    fade_start = np.where(dropped, np.maximum(drop_t - fade_len, ev_start), horizon)
    # Engaged from signup until the fade begins (to the end for customers still alive).
    add(*_poisson_segments(rng, buyers, ev_start, fade_start, rate), _PHASE_ENGAGED)
    # Fading: the intensity falls linearly to FADE_FLOOR at the dropout (by thinning).
    who, t = _poisson_segments(rng, buyers[dropped], fade_start[dropped], drop_t[dropped], rate[dropped])
    level = 1.0 - (1.0 - FADE_FLOOR) * (t - (drop_t[who] - fade_len[who])) / fade_len[who]
    kept = rng.random(who.size) < level
    add(who[kept], t[kept], _PHASE_FADING)
    # Lapsed: near zero after the dropout.
    add(*_poisson_segments(rng, buyers[dropped], drop_t[dropped], np.full(dropped.sum(), horizon),
                           rate[dropped] * AFTER_DROPOUT_RATE_SHARE), _PHASE_LAPSED)
    # Prospects: interest decays exponentially after signup; exact inverse-CDF sampling.
    prospect_signup = signup[nb:]
    mass = 1.0 - np.exp(-(horizon - prospect_signup) / PROSPECT_INTEREST_DAYS)
    n = rng.poisson(PROSPECT_EVENT_RATE_PER_DAY * PROSPECT_INTEREST_DAYS * mass)
    who = np.repeat(np.arange(nb, n_persons), n)
    t = signup[who] - PROSPECT_INTEREST_DAYS * np.log1p(-rng.random(n.sum()) * mass[who - nb])
    add(who, np.minimum(t, np.nextafter(horizon, 0.0)), _PHASE_PROSPECT)
    return np.concatenate(owners), np.concatenate(times), np.concatenate(phases)


# Every props value the events use; an event stores an index into this list.
_PROPS = ([None] + [{"campaign": c} for c in _CAMPAIGNS] + [{"topic": t} for t in _TICKET_TOPICS]
          + [{"topic": t} for t in _COMPLAINT_TOPICS] + [{"survey": "nps"}, {"survey": "csat"}])
_PROPS_CAMPAIGN = 1
_PROPS_TICKET = _PROPS_CAMPAIGN + len(_CAMPAIGNS)
_PROPS_COMPLAINT = _PROPS_TICKET + len(_TICKET_TOPICS)
_PROPS_NPS = _PROPS_COMPLAINT + len(_COMPLAINT_TOPICS)
_PROPS_TEXT = [json.dumps(x, separators=(",", ":")) if x else "null" for x in _PROPS]


def _event_lines(rng: np.random.Generator, plan: _Plan, t: np.ndarray, phase: np.ndarray,
                 user: pl.Series, event_offset: int) -> pl.DataFrame:
    """One JSON text per event (column `line`), sorted by time; ids continue from `event_offset`."""
    n = t.size
    at_risk = (phase == _PHASE_FADING) | (phase == _PHASE_LAPSED)
    kind = _draw_rows(rng, _EVENT_MIX, phase)
    channel = _draw_rows(rng, _EVENT_CHANNEL_MIX, kind)
    props = np.zeros(n, dtype=np.int64)
    score = np.full(n, np.nan)

    def topic(mask: np.ndarray, first: int, count: int) -> None:
        props[mask] = first + np.floor(rng.random(mask.sum()) * count).astype(np.int64)

    topic((kind == _EMAIL_OPEN) | (kind == _EMAIL_CLICK), _PROPS_CAMPAIGN, len(_CAMPAIGNS))
    ticket = kind == _TICKET
    topic(ticket, _PROPS_TICKET, len(_TICKET_TOPICS))
    topic(kind == _COMPLAINT, _PROPS_COMPLAINT, len(_COMPLAINT_TOPICS))
    survey = kind == _SURVEY
    nps = survey & (rng.random(n) < NPS_SHARE_OF_SURVEYS)
    csat = survey & ~nps
    props[nps], props[csat] = _PROPS_NPS, _PROPS_NPS + 1
    for risk in (False, True):
        sel = ticket & (at_risk == risk)
        score[sel] = np.round(rng.lognormal(*_TICKET_HOURS[risk], sel.sum()), 2)
        sel = nps & (at_risk == risk)
        score[sel] = _draw(rng, _NPS_PROBS[risk], sel.sum())
        sel = csat & (at_risk == risk)
        score[sel] = 1 + _draw(rng, _CSAT_PROBS[risk], sel.sum())
    epoch = _to_epoch(plan, t)
    order = np.lexsort((rng.random(n), epoch))
    score_series = pl.Series(score[order]).fill_nan(None)
    frame = pl.DataFrame({
        "id": "E" + pl.Series(event_offset + 1 + np.arange(n)).cast(pl.String).str.zfill(10),
        "user": user.gather(order),
        "timestamp": pl.from_epoch(pl.Series(epoch[order]), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event": pl.Series(_EVENT_TYPES).gather(kind[order]),
        "channel": pl.Series(_EVENT_CHANNELS).gather(channel[order]),
        # Survey scores are integers; response times keep their two decimals.
        "score": pl.Series(survey[order]).to_frame("s").select(
            pl.when(pl.col("s")).then(score_series.cast(pl.Int64).cast(pl.String))
            .otherwise(score_series.cast(pl.String)).fill_null("null")).to_series(),
        "props": pl.Series(_PROPS_TEXT).gather(props[order]),
    })
    # Hand-rendered JSON (the values need no escaping: ids, codes and fixed labels), which
    # is an order of magnitude faster than json.dumps per event.
    parts: list[pl.Expr] = []
    for i, key in enumerate(EVENT_KEYS):
        raw = key in ("score", "props")  # JSON numbers / objects / null, not strings
        parts.append(pl.lit(("{" if i == 0 else ",") + f'"{key}":' + ("" if raw else '"')))
        parts.append(pl.col(key))
        parts.append(pl.lit("" if raw else '"'))
    return frame.select(pl.concat_str([*parts, pl.lit("}")]).alias("line"))


# ---------------------------------------------------------------------------
# Customer records.
# ---------------------------------------------------------------------------


def _customer_records(rng: np.random.Generator, plan: _Plan, chunk: _Chunk, country: np.ndarray,
                      signup: np.ndarray, dup_person: np.ndarray, dup_kind_email: np.ndarray,
                      dup_signup: np.ndarray, rec_ids: pl.Series) -> pl.DataFrame:
    """customers.csv rows of one chunk (every person's record, then second records), by id."""
    n, nd = country.size, dup_person.size
    # The global person index keys e-mail numbers and phone numbers: unique per person.
    key = chunk.first_person + np.arange(n)

    # Names: Chinese customers mostly in Han characters, family name first.
    gender = _draw(rng, (0.48, 0.48, 0.01, 0.03), n)  # F, M, D, missing
    female = (gender == 0) | ((gender >= 2) & (rng.random(n) < 0.5))
    first_f, first_m = _FEMALE.draw(rng, country), _MALE.draw(rng, country)
    surname = _SURNAMES.draw(rng, country)

    def first_name(field: str) -> np.ndarray:
        return np.where(female, getattr(_FEMALE, field)[first_f], getattr(_MALE, field)[first_m])

    first_latin, first_email, first_initial = first_name("latin"), first_name("email"), first_name("initial")
    last_latin, last_email = _SURNAMES.latin[surname], _SURNAMES.email[surname]
    han = (country == _COUNTRY_CN) & (rng.random(n) < _HAN_NAME_SHARE)
    full_name = np.where(han, _SURNAMES.native[surname] + first_name("native"),
                         first_latin + " " + last_latin)
    email = _email_addresses(first_email, first_initial, last_email,
                             _DOMAINS.native[_DOMAINS.draw(rng, country, zipf=0.8)],
                             np.floor(rng.random(n) * 5).astype(np.int64), _email_number(plan, key))
    city = _CITIES.native[_CITIES.draw(rng, country, zipf=0.9)]
    birth_day = _birth_dates(rng, n)

    # Missing contact data only for people without a second record: that one must stay
    # recognisable by e-mail or phone.
    has_dup = np.zeros(n, bool)
    has_dup[dup_person] = True
    email_missing = ~has_dup & (rng.random(n) < EMAIL_MISSING_SHARE)
    phone_present = has_dup | (rng.random(n) >= PHONE_MISSING_SHARE)

    # Second records: the same e-mail up to case and spaces, or the same phone written
    # differently plus a variant of the name (and an e-mail address of their own).
    d = dup_person
    second_email = _email_addresses(first_email[d], first_initial[d], last_email[d],
                                    _DOMAINS.native[_DOMAINS.draw(rng, country[d], zipf=0.8)],
                                    np.floor(rng.random(nd) * 5).astype(np.int64),
                                    _email_number(plan, plan.persons + key[d]))
    u = rng.random((nd, 4))
    # Few records (~2%): plain Python keeps these string variants readable.
    dup_email = [_email_variant(email[i], u[j, 0]) if dup_kind_email[j] else second_email[j]
                 for j, i in enumerate(d)]
    vary_name = ~dup_kind_email | (u[:, 3] < 0.6)
    dup_name = [_name_variant(first_latin[i], last_latin[i], full_name[i], han[i], u[j, 2])
                if vary_name[j] else full_name[i] for j, i in enumerate(d)]
    # E-mail duplicates carry the phone (in another format) only sometimes.
    dup_phone_present = ~dup_kind_email | (u[:, 1] < 0.7)

    rec_country = np.concatenate([country, country[d]])
    n_templates = _N_PHONE_TEMPLATES[rec_country]
    template = np.floor(rng.random(n + nd) * n_templates).astype(np.int64)
    # A second record writes its phone in a different format than the first.
    shift = 1 + np.floor(u[:, 1] * (n_templates[n:] - 1)).astype(np.int64)
    template[n:] = (template[d] + shift) % n_templates[n:]
    phones = _phone_numbers(rec_country, np.concatenate([key, key[d]]), template,
                            np.concatenate([phone_present, dup_phone_present]))

    rec_birth = np.concatenate([birth_day, np.where(rng.random(nd) < 0.3, -1, birth_day[d])])
    birth_text = pl.Series(np.maximum(rec_birth, 0)).cast(pl.Int32).cast(pl.Date).dt.strftime("%Y-%m-%d")
    rec_signup = np.concatenate([signup, dup_signup])
    updated = np.maximum(rec_signup, 0.0)
    updated = updated + rng.random(n + nd) * (plan.horizon_days - updated)
    opt_in = rng.random(n + nd) < MARKETING_OPT_IN_SHARE
    frame = pl.DataFrame({
        "CustomerID": rec_ids,
        "Email": _text(np.where(email_missing, None, email).tolist() + dup_email),
        "Phone": phones,
        "FullName": _text(full_name.tolist() + dup_name),
        "BirthDate": birth_text.scatter(np.flatnonzero(rec_birth < 0), None),
        "Gender": pl.Series(["F", "M", "D", None], dtype=pl.String).gather(np.concatenate([gender, gender[d]])),
        "City": _text(np.concatenate([city, city[d]]).tolist()),
        "Country": pl.Series(_COUNTRIES).gather(rec_country),
        "SignupDate": pl.from_epoch(pl.Series(_to_epoch(plan, rec_signup)), time_unit="s").dt.strftime("%Y-%m-%d"),
        "MarketingOptIn": pl.Series(np.where(opt_in, "yes", "no"), dtype=pl.String),
        "UpdatedAt": pl.from_epoch(pl.Series(_to_epoch(plan, updated)), time_unit="s"),
    })
    return frame.sort("CustomerID")


def _text(values: list[str | None]) -> pl.Series:
    return pl.Series(values, dtype=pl.String)


def _email_number(plan: _Plan, key: np.ndarray) -> np.ndarray:
    # Affine map modulo a power of ten with a multiplier coprime to 10: a bijection, so
    # numbers look random but two keys never share one.
    return (key.astype(np.int64) * 7919 + 4231) % plan.email_modulus


def _email_addresses(first: np.ndarray, initial: np.ndarray, last: np.ndarray, domain: np.ndarray,
                     style: np.ndarray, number: np.ndarray) -> np.ndarray:
    """Addresses like anna.mueller4821@gmx.de. The name part has no digits and the number
    is unique, so two different numbers never give the same address."""
    local = np.select(
        [style == 0, style == 1, style == 2, style == 3],
        [first + "." + last, initial + last, last + "." + first, first + "_" + last],
        default=first,
    )
    return local + number.astype(str).astype(object) + "@" + domain


def _email_variant(email: str, u: float) -> str:
    """The same address after trim + lower-case, as a second registration often writes it."""
    local, _, domain = email.partition("@")
    if u < 0.3:
        return email.upper()
    if u < 0.6:
        return f"{local[:1].upper()}{local[1:]}@{domain.upper()}"
    if u < 0.8:
        return f" {email} "
    return f"{local.capitalize()}@{domain} "


def _name_variant(first: str, last: str, full: str, han: bool, u: float) -> str:
    """A spelling of the same name that is equal after normalisation: accents stripped
    (NFKD), case folded, commas dropped, tokens sorted (see tests/test_generate.py)."""
    if han:
        return f" {full} " if u < 0.5 else full
    if u < 0.2:
        return full.upper()
    if u < 0.4:
        return full.lower()
    if u < 0.6:
        return " " + full.replace(" ", "  ") + " "
    if u < 0.8:
        return _strip_accents(full)
    return f"{last}, {first}"


def _birth_dates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Days since 1970-01-01 (ages 18-90, skewed to 25-50); -1 where missing."""
    age_years = np.minimum(18.0 + rng.gamma(2.5, 9.0, n), 90.0)
    reference = (date(2025, 1, 1) - date(1970, 1, 1)).days
    days = (reference - age_years * 365.25).astype(np.int64)
    return np.where(rng.random(n) < BIRTH_DATE_MISSING_SHARE, -1, days)


def _phone_numbers(country: np.ndarray, key: np.ndarray, template: np.ndarray,
                   present: np.ndarray) -> pl.Series:
    """Phone numbers as written, valid for `country`; null where not present.

    The prefix cycles with the person key and the subscriber number is an affine
    permutation of key // prefixes, so two people never share a number.
    """
    positions, values = [], []
    for k, code in enumerate(_COUNTRIES):
        data = _COUNTRY_DATA[code]
        prefixes, templates = data["prefixes"], data["phones"]
        rows = np.flatnonzero((country == k) & present)
        prefix_idx = key[rows] % len(prefixes)
        for pi, (prefix, length) in enumerate(prefixes):
            group = rows[prefix_idx == pi]
            offset = int(prefix) * 982_451_653 % 10**length
            numbers = (key[group] // len(prefixes) * 7_654_321 + offset) % 10**length
            subscriber = pl.Series(numbers).cast(pl.String).str.zfill(length)
            for ti in np.unique(template[group]):
                pick = template[group] == ti
                rendered = subscriber.filter(pick).to_frame("s").select(
                    _render_phone(templates[ti], prefix, pl.col("s"))).to_series()
                positions.append(group[pick])
                values.append(rendered)
    out = pl.Series([None] * country.size, dtype=pl.String)
    if positions:
        out = out.scatter(np.concatenate(positions), pl.concat(values))
    return out
