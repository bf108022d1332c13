"""Printable voucher sheets: one PNG per voucher and, if asked, one PDF with a page per voucher.

A sheet shows the product, the litres, the last day it is valid, the code in groups of four and a QR code
holding the code alone (19 digits: numeric mode, ISO/IEC 18004 clause 7.4.3; error correction level M),
so a scanner types exactly what the PIN pad would. The files are bearer vouchers: written with mode 0600,
named by voucher id, never by code. The PNG's text chunks carry the voucher's id, product, volume and
expiry (not the code) for tools that sort printed sheets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.errors import ConfigError, MissingComponent
from registry.vouchers import IssuedVoucher, group_code

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["SHEET_SIZE", "litres", "qr_image", "sheet", "write_sheets"]

SHEET_SIZE = (827, 1165)        # A6 portrait at 200 dots per inch
DPI = 200
_INK, _PAPER = 0, 255


def litres(volume_cl: int) -> str:
    """
    >>> litres(4050), litres(1000)
    ('40.50 L', '10.00 L')
    """
    return f"{volume_cl // 100}.{volume_cl % 100:02d} L"


def qr_image(code: str, box: int = 10) -> Image.Image:
    """The QR code of `code` as a black-and-white image, `box` pixels per module, a 4-module quiet zone."""
    try:
        import qrcode  # type: ignore[import-untyped]
        from qrcode.constants import ERROR_CORRECT_M  # type: ignore[import-untyped]
    except ImportError as exc:           # installed with python-escpos; named in case it was left out
        raise MissingComponent("voucher sheets need qrcode and Pillow: pip install 'qrcode[pil]'") from exc
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box, border=4)
    qr.add_data(code)
    qr.make(fit=True)
    made: Image.Image = qr.make_image(fill_color="black", back_color="white").get_image()
    return made.convert("L")


def sheet(voucher: IssuedVoucher, product_name: str) -> Image.Image:
    """One voucher's sheet, greyscale."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", SHEET_SIZE, _PAPER)
    draw = ImageDraw.Draw(page)
    width = SHEET_SIZE[0]

    def centred(y: int, text: str, size: int) -> None:
        font = ImageFont.load_default(size=size)
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        draw.text(((width - (right - left)) // 2, y), text, fill=_INK, font=font)

    centred(50, "FUEL VOUCHER", 56)
    centred(140, f"{litres(voucher.volume_cl)}  {product_name}", 44)
    until = f"valid until {voucher.expires_on.isoformat()}" if voucher.expires_on else "no expiry date"
    centred(210, until, 32)
    qr = qr_image(voucher.code)
    if qr.width > width - 40:
        qr = qr.resize((width - 40, width - 40), Image.Resampling.NEAREST)
    page.paste(qr, ((width - qr.width) // 2, 280))
    centred(300 + qr.height, group_code(voucher.code), 44)
    centred(380 + qr.height, "Type this code at the pump terminal. Valid once.", 26)
    label = f"voucher {voucher.voucher_id}" + (f"  batch {voucher.batch}" if voucher.batch else "")
    centred(SHEET_SIZE[1] - 70, label, 24)
    return page


def _private(path: Path) -> int:
    """A new file's descriptor, mode 0600: an existing sheet is never written over."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} exists already: give an empty directory", key="out") from exc


def write_sheets(vouchers: Sequence[IssuedVoucher], out: Path, *, product_name: str,
                 pdf: bool = False) -> list[Path]:
    """voucher-<id>.png per voucher in `out` (made if missing) and, with pdf, vouchers-<first>-<last>.pdf
    with one page per voucher; the paths written."""
    from PIL import PngImagePlugin

    out.mkdir(parents=True, exist_ok=True)
    written, pages = [], []
    for voucher in vouchers:
        page = sheet(voucher, product_name)
        info = PngImagePlugin.PngInfo()
        for key, value in (("voucher", str(voucher.voucher_id)), ("product", voucher.product),
                           ("volume_cl", str(voucher.volume_cl)), ("batch", voucher.batch),
                           ("expires_on", voucher.expires_on.isoformat() if voucher.expires_on else "")):
            info.add_text(key, value)
        path = out / f"voucher-{voucher.voucher_id:06d}.png"
        with os.fdopen(_private(path), "wb") as f:
            page.save(f, format="PNG", pnginfo=info, dpi=(DPI, DPI))
        written.append(path)
        pages.append(page)
    if pdf and pages:
        path = out / f"vouchers-{vouchers[0].voucher_id:06d}-{vouchers[-1].voucher_id:06d}.pdf"
        with os.fdopen(_private(path), "wb") as f:
            pages[0].save(f, format="PDF", save_all=True, append_images=pages[1:], resolution=DPI)
        written.append(path)
    return written
