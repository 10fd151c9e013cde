"""The synthetic people's countries: names, cities, e-mail domains, currencies and phone
number plans per country, the name pools drawn from them, and phone numbers as written.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.sample.parameters import FX_RATES_PER_EUR

# Phone templates: {p} prefix, {s} subscriber number, {n[a:b]} slice of the national
# significant number. Prefixes are followed by `length` free digits; every such number
# is valid for its country according to libphonenumber (checked in the tests).
_COUNTRY_DATA: dict[str, dict] = {
    "DE": dict(
        weight=0.48,
        cc="49",
        prefixes=[
            ("30", 8),
            ("40", 8),
            ("89", 8),
            ("69", 8),
            ("221", 7),
            ("211", 7),
            ("711", 7),
            ("341", 7),
            ("1512", 7),
            ("1523", 7),
            ("1575", 7),
            ("1601", 7),
            ("1704", 7),
            ("1726", 7),
            ("1767", 7),
        ],
        phones=[
            "+49 {p} {s}",
            "+49{p}{s}",
            "0049 {p} {s}",
            "0{p} {s}",
            "0{p}/{s}",
            "(0{p}) {s}",
            "0{p}-{s}",
            "+49 (0){p} {s}",
        ],
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
        weight=0.10,
        cc="43",
        prefixes=[
            ("664", 7),
            ("676", 7),
            ("650", 7),
            ("699", 8),
            ("15", 6),
            ("17", 6),
            ("316", 6),
            ("512", 6),
            ("662", 6),
        ],
        phones=[
            "+43 {p} {s}",
            "+43{p}{s}",
            "0043 {p} {s}",
            "0{p} {s}",
            "0{p}/{s}",
            "+43 (0){p} {s}",
        ],
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
        weight=0.04,
        cc="41",
        currency="CHF",
        prefixes=[
            ("44", 7),
            ("31", 7),
            ("61", 7),
            ("22", 7),
            ("79", 7),
            ("78", 7),
            ("76", 7),
            ("77", 7),
        ],
        phones=[
            "+41 {n[0:2]} {n[2:5]} {n[5:7]} {n[7:9]}",
            "0{n[0:2]} {n[2:5]} {n[5:7]} {n[7:9]}",
            "0041 {n[0:2]} {n[2:5]} {n[5:7]} {n[7:9]}",
            "+41{n[0:9]}",
            "0{n[0:9]}",
        ],
        female="Anna Lea Mia Laura Sophie Léa Chloé Nadine Andrea Ursula Ruth Verena Céline Noémie",
        male="Noah Luca Leon Lars Reto Urs Beat Jürg Rolf Daniel Stéphane Loïc Matthias Jörg",
        surnames="Müller Meier Schmid Keller Weber Huber Schneider Meyer Steiner Fischer Gerber "
        "Brunner Baumann Frei Zimmermann Moser Widmer Wyss Graf Roth Favre Rochat Bonvin "
        "Künzli Jäggi Bühler Lüthi Zürcher",
        cities="Zürich|Genève|Basel|Bern|Lausanne|Winterthur|Luzern|St. Gallen|Lugano|Biel/Bienne",
        domains="bluewin.ch gmx.ch gmail.com hispeed.ch sunrise.ch",
    ),
    "FR": dict(
        weight=0.08,
        cc="33",
        prefixes=[
            ("61", 7),
            ("62", 7),
            ("66", 7),
            ("67", 7),
            ("68", 7),
            ("75", 7),
            ("14", 7),
            ("47", 7),
        ],
        phones=[
            "+33 {n[0:1]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
            "0{n[0:1]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
            "0{n[0:1]}.{n[1:3]}.{n[3:5]}.{n[5:7]}.{n[7:9]}",
            "0{n[0:9]}",
            "+33{n[0:9]}",
            "0033 {n[0:1]} {n[1:9]}",
        ],
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
        weight=0.06,
        cc="31",
        prefixes=[("61", 7), ("62", 7), ("64", 7), ("65", 7), ("20", 7), ("10", 7), ("30", 7)],
        phones=[
            "+31 {p} {s}",
            "0{p} {s}",
            "0{p}-{s}",
            "0031 {p} {s}",
            "+31 (0){p} {s}",
            "+31{p}{s}",
        ],
        female="Emma Julia Sophie Tess Zoë Anouk Sanne Lotte Fleur Eva Lieke Maaike Femke Ilse Noor",
        male="Daan Sem Lucas Levi Finn Bram Jesse Thijs Ruben Joost Sander Pieter Wouter Bas Koen",
        surnames="de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer|"
        "de Boer|Mulder|de Groot|Bos|Vos|Peters|Hendriks|van Leeuwen|Dekker|Brouwer",
        cities="Amsterdam|Rotterdam|Den Haag|Utrecht|Eindhoven|Groningen|Tilburg|Almere|Breda|"
        "Nijmegen|'s-Hertogenbosch",
        domains="ziggo.nl kpnmail.nl gmail.com hotmail.nl outlook.com xs4all.nl",
    ),
    "GB": dict(
        weight=0.06,
        cc="44",
        currency="GBP",
        prefixes=[
            ("7723", 6),
            ("7787", 6),
            ("7400", 6),
            ("7520", 6),
            ("7824", 6),
            ("1214", 6),
            ("1612", 6),
            ("1134", 6),
            ("2079", 6),
            ("2084", 6),
        ],
        phones=[
            "+44 {p} {s}",
            "0{p} {s}",
            "+44 (0){p} {s}",
            "0044 {p} {s}",
            "+44{p}{s}",
            "0{p}{s}",
        ],
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
        weight=0.05,
        cc="1",
        currency="USD",
        prefixes=[
            ("2125", 6),
            ("4156", 6),
            ("6173", 6),
            ("3124", 6),
            ("2027", 6),
            ("3056", 6),
            ("5127", 6),
            ("7184", 6),
            ("8188", 6),
            ("2069", 6),
        ],
        phones=[
            "({n[0:3]}) {n[3:6]}-{n[6:10]}",
            "{n[0:3]}-{n[3:6]}-{n[6:10]}",
            "+1 {n[0:3]}-{n[3:6]}-{n[6:10]}",
            "+1 ({n[0:3]}) {n[3:6]}-{n[6:10]}",
            "{n[0:3]}.{n[3:6]}.{n[6:10]}",
            "+1{n[0:10]}",
            "1-{n[0:3]}-{n[3:6]}-{n[6:10]}",
        ],
        female="Emma Olivia Ava Isabella Sophia Mia Madison Abigail Emily Ashley Jennifer Brittany Sarah",
        male="Liam Noah Ethan Mason Logan Michael David Christopher Matthew Joshua Daniel Tyler Brandon",
        surnames="Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
        "Lopez Gonzalez Wilson Anderson Nguyen Kim Patel",
        cities="New York|Los Angeles|Chicago|Houston|Phoenix|San Francisco|Seattle|Boston|Austin|Miami",
        domains="gmail.com yahoo.com outlook.com icloud.com aol.com",
    ),
    "IT": dict(
        weight=0.04,
        cc="39",
        prefixes=[
            ("0657", 6),
            ("0276", 6),
            ("347", 7),
            ("333", 7),
            ("320", 7),
            ("338", 7),
            ("3491", 6),
        ],
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
        weight=0.03,
        cc="34",
        prefixes=[("61", 7), ("62", 7), ("65", 7), ("91", 7), ("93", 7), ("69", 7)],
        phones=[
            "+34 {n[0:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
            "{n[0:3]} {n[3:5]} {n[5:7]} {n[7:9]}",
            "{n[0:9]}",
            "+34{n[0:9]}",
            "0034 {n[0:3]} {n[3:6]} {n[6:9]}",
        ],
        female="Lucía María Martina Sofía Paula Julia Valeria Alba Carmen Inés Nerea Ainhoa",
        male="Hugo Martín Lucas Mateo Leo Daniel Alejandro Pablo José Javier Álvaro Iñaki Adrián",
        surnames="García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín "
        "Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Núñez Ibáñez",
        cities="Madrid|Barcelona|València|Sevilla|Zaragoza|Málaga|Bilbao|A Coruña|Córdoba|Cádiz",
        domains="gmail.com hotmail.es telefonica.net yahoo.es",
    ),
    "PL": dict(
        weight=0.03,
        cc="48",
        prefixes=[("50", 7), ("60", 7), ("69", 7), ("22", 7), ("12", 7), ("51", 7)],
        phones=[
            "+48 {n[0:3]} {n[3:6]} {n[6:9]}",
            "{n[0:3]} {n[3:6]} {n[6:9]}",
            "{n[0:3]}-{n[3:6]}-{n[6:9]}",
            "+48{n[0:9]}",
            "0048 {n[0:3]} {n[3:6]} {n[6:9]}",
        ],
        female="Zofia Zuzanna Julia Maja Hanna Małgorzata Agnieszka Katarzyna Anna Ewa Joanna Magdalena",
        male="Łukasz Paweł Piotr Krzysztof Tomasz Michał Jakub Wojciech Kacper Mateusz Jan Andrzej",
        surnames="Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański "
        "Woźniak Dąbrowski Kozłowski Jankowski Mazur Krawczyk Piotrowski Grabowski Pawłowski",
        cities="Warszawa|Kraków|Łódź|Wrocław|Poznań|Gdańsk|Szczecin|Lublin|Białystok|Katowice",
        domains="wp.pl onet.pl interia.pl gmail.com o2.pl",
    ),
    "CN": dict(
        weight=0.03,
        cc="86",
        prefixes=[("138", 8), ("139", 8), ("136", 8), ("150", 8), ("186", 8), ("135", 8)],
        phones=[
            "+86 {n[0:3]} {n[3:7]} {n[7:11]}",
            "{n[0:3]} {n[3:7]} {n[7:11]}",
            "{n[0:11]}",
            "+86{n[0:11]}",
            "0086 {n[0:11]}",
            "{n[0:3]}-{n[3:7]}-{n[7:11]}",
        ],
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

_TRANSLIT = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe"}
)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


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
        return cls(
            np.array(native, dtype=object),
            np.array(latin, dtype=object),
            np.array(email, dtype=object),
            np.array([e[:1] for e in email], dtype=object),
            np.concatenate([[0], np.cumsum(sizes)]),
        )

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
_COUNTRY_CURRENCY = np.array(
    [_CURRENCIES.index(d.get("currency", "EUR")) for d in _COUNTRY_DATA.values()]
)
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
            parts.append(pl.lit(template[pos : match.start()]))
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


def _phone_numbers(
    country: np.ndarray, key: np.ndarray, template: np.ndarray, present: np.ndarray
) -> pl.Series:
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
                rendered = (
                    subscriber.filter(pick)
                    .to_frame("s")
                    .select(_render_phone(templates[ti], prefix, pl.col("s")))
                    .to_series()
                )
                positions.append(group[pick])
                values.append(rendered)
    out = pl.Series([None] * country.size, dtype=pl.String)
    if positions:
        out = out.scatter(np.concatenate(positions), pl.concat(values))
    return out
